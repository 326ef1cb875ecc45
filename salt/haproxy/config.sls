{%- from "map.jinja" import hl with context %}
include:
  - haproxy.install
{%- if hl.tls_on.patroni_api %}
  - tls  # the health checks verify the members against halite's CA
{%- endif %}

haproxy-config-file:
  file.managed:
    - name: /etc/haproxy/haproxy.cfg
    - source: salt://haproxy/files/haproxy.cfg.jinja
    - template: jinja
    - context:
        hl: {{ hl|json }}
    # holds the stats page's password: readable by root and HAProxy's group only, never diffed
    - user: root
    - group: haproxy
    - mode: "0640"
    - show_changes: False
    - check_cmd: haproxy -c -f
    - require:
      - sls: haproxy.install
{%- if hl.tls_on.patroni_api %}
      - file: halite-tls-ca
{%- endif %}
