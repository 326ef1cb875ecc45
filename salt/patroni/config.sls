{%- from "map.jinja" import hl with context %}
include:
  - patroni.install

patroni-config-dir:
  file.directory:
    - name: /etc/patroni
    - user: postgres
    - group: postgres
    - mode: "0750"
    - require:
      - sls: patroni.install

patroni-data-dir:
  file.directory:
    - name: {{ hl.paths.pg_datadir }}
    - user: postgres
    - group: postgres
    - mode: "0700"
    - makedirs: True
    - require:
      - sls: patroni.install

patroni-config-file:
  file.managed:
    - name: {{ hl.paths.patroni_conf }}
    - source: salt://patroni/files/patroni.yml.jinja
    - template: jinja
    - user: postgres
    - group: postgres
    - mode: "0600"
    # it holds every PostgreSQL password: never print its diff
    - show_changes: False
    - context:
        hl: {{ hl|json }}
    - require:
      - file: patroni-config-dir
      - file: patroni-data-dir
