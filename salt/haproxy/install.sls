{%- from "map.jinja" import hl with context %}
include:
  - base.packages

haproxy-packages:
  pkg.installed:
    - pkgs: {{ (hl.pkgs.haproxy + hl.pkgs.pg_client)|json }}
    - require:
      - sls: base.packages
