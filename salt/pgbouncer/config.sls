{%- from "map.jinja" import hl with context %}
{%- set auth = hl.users.pgbouncer_auth %}
{%- set user = hl.os_users.pgbouncer %}
{%- set own_key = hl.paths.pgbouncer_tls_key if hl.tls_on.pgbouncer else None %}
# Clients authenticate with scram-sha-256 against the verifiers PostgreSQL
# holds, looked up with auth_query by a dedicated auth user: the only password
# on disk here is that user's. PgBouncer runs as its package's user
# (halite.platforms os_users: postgres on Debian, pgbouncer on the RedHat family).
include:
  - pgbouncer.install
  - postgresql.tls  # on Debian PgBouncer runs as postgres and reads postgres's copy of the key
{%- if own_key %}
  - tls

# PgBouncer's own copy of this host's key where it does not run as postgres
# (halite.platforms paths pgbouncer_tls_key). No diff is ever shown.
pgbouncer-tls-key:
  file.managed:
    - name: {{ own_key }}
    - contents: {{ hl.host.tls.key|json }}
    - user: {{ user }}
    - group: {{ user }}
    - mode: "0600"
    - show_changes: False
    - require:
      - sls: pgbouncer.install
      - file: halite-tls-dir
{%- endif %}

pgbouncer-config-file:
  file.managed:
    - name: {{ hl.paths.pgbouncer_dir }}/pgbouncer.ini
    - source: salt://pgbouncer/files/pgbouncer.ini.jinja
    - template: jinja
    - user: {{ user }}
    - group: {{ user }}
    - mode: "0640"
    - context:
        pgb: {{ hl.pgbouncer|json }}
        pg_port: {{ hl.postgresql.port }}
        auth_user: {{ auth.username }}
        stats_users: {{ hl.host.get('pgbouncer_stats_users', [auth.username])|json }}
        address: {{ hl.host.address }}
        tls: {{ hl.host.pgbouncer_tls|json }}
        tls_key_file: {{ own_key|json }}
        auth_file: {{ (hl.paths.pgbouncer_dir ~ '/userlist.txt')|json }}
        socket_dir: {{ hl.paths.pgbouncer_socket_dir|json }}
        logfile: {{ hl.paths.pgbouncer_logfile|json }}
        pidfile: {{ hl.paths.pgbouncer_pidfile|json }}
    - require:
      - sls: pgbouncer.install
      - sls: postgresql.tls

pgbouncer-auth-file:
  file.managed:
    - name: {{ hl.paths.pgbouncer_dir }}/userlist.txt
    - user: {{ user }}
    - group: {{ user }}
    - mode: "0600"
    # one line, "user" "password" with " doubled: halite.formats.pgbouncer_userlist
    - contents: {{ hl.host.pgbouncer_userlist|json }}
    - show_changes: False
    - require:
      - sls: pgbouncer.install
