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
    - mode: "0644"
    - check_cmd: haproxy -c -f
    - require:
      - sls: haproxy.install
{%- if hl.tls_on.patroni_api %}
      - file: halite-tls-ca
{%- endif %}
