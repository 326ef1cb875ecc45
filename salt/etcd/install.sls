{%- from "map.jinja" import hl with context %}
include:
  - base.packages

etcd-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.etcd|json }}
    - require:
      - sls: base.packages
