{%- from "map.jinja" import hl with context %}
{%- set auth = hl.users.pgbouncer_auth %}
# Clients authenticate with scram-sha-256 against the verifiers PostgreSQL
# holds, looked up with auth_query by a dedicated auth user: the only password
# on disk here is that user's.
include:
  - pgbouncer.install
  - postgresql.tls  # PgBouncer runs as postgres and reads postgres's copy of the key

pgbouncer-config-file:
  file.managed:
    - name: {{ hl.paths.pgbouncer_dir }}/pgbouncer.ini
    - source: salt://pgbouncer/files/pgbouncer.ini.jinja
    - template: jinja
    - user: postgres
    - group: postgres
    - mode: "0640"
    - context:
        pgb: {{ hl.pgbouncer|json }}
        pg_port: {{ hl.postgresql.port }}
        auth_user: {{ auth.username }}
        stats_users: {{ hl.host.get('pgbouncer_stats_users', [auth.username])|json }}
        address: {{ hl.host.address }}
        tls: {{ hl.host.pgbouncer_tls|json }}
    - require:
      - sls: pgbouncer.install
      - sls: postgresql.tls

pgbouncer-auth-file:
  file.managed:
    - name: {{ hl.paths.pgbouncer_dir }}/userlist.txt
    - user: postgres
    - group: postgres
    - mode: "0600"
    # one line, "user" "password" with " doubled: halite.formats.pgbouncer_userlist
    - contents: {{ hl.host.pgbouncer_userlist|json }}
    - show_changes: False
    - require:
      - sls: pgbouncer.install
