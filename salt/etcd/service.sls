{%- from "map.jinja" import hl with context %}
include:
  - etcd.tls
  - etcd.config

etcd-service-running:
  service.running:
    - name: {{ hl.services.etcd }}
    - enable: True
    - watch:
{%- if hl.tls_on.etcd %}
      - file: etcd-tls-key
{%- endif %}
      - sls: etcd.config
