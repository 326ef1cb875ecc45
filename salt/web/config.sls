{%- from "map.jinja" import hl with context %}
{%- from "web/target.jinja" import site with context %}
{%- set w = hl.web %}
# The site's settings. site.env holds the DSNs of the chosen database (and so
# passwords: 0640, group of the site's user); gunicorn.conf.py reads it at
# every start and reload. target_file records the choice on the host, so a
# later state.apply without a pillar value keeps it (see web/target.jinja).
include:
  - web.user

web-config-dir:
  file.directory:
    - name: {{ w.config_dir }}
    - user: root
    - group: {{ w.user }}
    - mode: "0750"
    - require:
      - user: web-system-user

web-site-env:
  file.managed:
    - name: {{ w.config_dir }}/site.env
    - source: salt://web/files/site.env.jinja
    - template: jinja
    - user: root
    - group: {{ w.user }}
    - mode: "0640"
    - show_changes: False
    - context:
        site: {{ site|json }}
        # https (tls on the site): the session cookie is marked Secure
        secure_cookies: {{ hl.host.site.tls|json }}
    - require:
      - file: web-config-dir

web-target-file:
  file.managed:
    - name: {{ w.target_file }}
    - contents: {{ site.target }}
    - user: root
    - group: root
    - mode: "0644"
    - makedirs: True
    - require:
      - file: web-site-env

web-gunicorn-config:
  file.managed:
    - name: {{ w.config_dir }}/gunicorn.conf.py
    - source: salt://web/files/gunicorn.conf.py.jinja
    - template: jinja
    - user: root
    - group: {{ w.user }}
    - mode: "0640"
    - context:
        env_file: {{ w.config_dir }}/site.env
        app_dir: {{ w.home }}/app
        bind: {{ w.bind }}
        workers: {{ w.workers }}
        threads: {{ w.threads }}
    - require:
      - file: web-config-dir
