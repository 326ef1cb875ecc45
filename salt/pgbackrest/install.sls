{%- from "map.jinja" import hl with context %}
include:
  - base.packages

pgbackrest-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.pgbackrest|json }}
    - require:
      - sls: base.packages
