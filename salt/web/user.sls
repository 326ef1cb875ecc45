{%- from "map.jinja" import hl with context %}
{%- set w = hl.web %}
# The site runs as an unprivileged system user that owns nothing but its logs.
web-system-user:
  user.present:
    - name: {{ w.user }}
    - system: True
    - usergroup: True
    - home: {{ w.home }}
    - createhome: False
    - shell: /usr/sbin/nologin
