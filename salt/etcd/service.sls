{%- from "map.jinja" import hl with context %}
include:
  - etcd.config

etcd-service-running:
  service.running:
    - name: {{ hl.services.etcd }}
    - enable: True
    - watch:
      - sls: etcd.config
