{%- from "map.jinja" import hl with context %}
{%- set p = hl.tls_paths %}
# postgres's copy of this host's key (salt/tls lays down root's): PostgreSQL refuses a key
# file another user can read, and PgBouncer (running as postgres) reads the same copy.
# This state is the only one managing the file: Patroni's and PgBouncer's states require it.
include:
  - tls
  - postgresql.install

halite-tls-key-postgres:
  file.managed:
    - name: {{ p['keys']['postgres'] }}
    - contents: {{ hl.host.tls.key|json }}
    - user: postgres
    - group: postgres
    - mode: "0600"
    - show_changes: False
    - require:
      - file: halite-tls-dir
      - pkg: postgresql-packages
