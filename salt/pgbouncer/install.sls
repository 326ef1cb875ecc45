{%- from "map.jinja" import hl with context %}
include:
  - base.packages

pgbouncer-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.pgbouncer|json }}
    - require:
      - sls: base.packages
