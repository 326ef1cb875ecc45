{%- from "map.jinja" import hl with context %}
{%- set u = hl.users %}
{%- set dbs = hl.pgbouncer.databases %}
# Roles and databases the stack needs beyond Patroni's own users, created on
# whichever member is the leader (the others skip: onlyif patroni.is_leader).
include:
  - patroni.service

{%- for key in ['pgbouncer_auth', 'app'] %}
patroni-role-{{ key }}:
  postgres_user.present:
    - name: {{ u[key].username }}
    - password: {{ u[key].password|json }}
    - encrypted: scram-sha-256
    - login: True
    - user: postgres
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - patroni_cluster: patroni-cluster-healthy
{%- endfor %}

patroni-database-app:
  postgres_database.present:
    - name: {{ u.app.database }}
    - owner: {{ u.app.username }}
    - user: postgres
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - postgres_user: patroni-role-app

{#- PgBouncer's auth_query looks passwords up through this function, as the
    dedicated auth user, in each database it serves (PgBouncer 1.18 has no auth_dbname). #}
{%- for db in dbs|unique %}
patroni-pgbouncer-auth-function-{{ db }}:
  cmd.run:
    - name: |
        psql -v ON_ERROR_STOP=1 -qAt -d {{ db }} <<'SQL'
        BEGIN;
        CREATE SCHEMA IF NOT EXISTS pgbouncer AUTHORIZATION postgres;
        CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text)
          RETURNS TABLE(usename name, passwd text) LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
          $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_usename
                    AND usename <> 'postgres' $$;
        REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
        GRANT USAGE ON SCHEMA pgbouncer TO {{ u.pgbouncer_auth.username }};
        GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO {{ u.pgbouncer_auth.username }};
        COMMIT;
        SQL
    - runas: postgres
    - unless: psql -qAt -d {{ db }} -c "SELECT has_function_privilege('{{ u.pgbouncer_auth.username }}', 'pgbouncer.get_auth(text)', 'EXECUTE')" | grep -qx t
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - postgres_user: patroni-role-pgbouncer_auth
      - postgres_database: patroni-database-app
{%- endfor %}

{%- if hl.roles.get('backup') %}
{#- The backup host's read-only login, and the table of restore points
    (pgbackrest.restore_point writes it on the primary; the restore drill and
    orch.restore read it from the backup host). #}
patroni-role-backup:
  postgres_user.present:
    - name: {{ u.backup.username }}
    - password: {{ u.backup.password|json }}
    - encrypted: scram-sha-256
    - login: True
    - user: postgres
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - patroni_cluster: patroni-cluster-healthy

patroni-restore-points-table:
  cmd.run:
    - name: |
        psql -v ON_ERROR_STOP=1 -qAt -d {{ u.app.database }} <<'SQL'
        BEGIN;
        CREATE SCHEMA IF NOT EXISTS halite AUTHORIZATION postgres;
        CREATE TABLE IF NOT EXISTS halite.restore_points (
          name text PRIMARY KEY,
          lsn pg_lsn NOT NULL,
          created timestamptz NOT NULL,
          tables jsonb NOT NULL);
        REVOKE ALL ON SCHEMA halite FROM PUBLIC;
        GRANT USAGE ON SCHEMA halite TO {{ u.backup.username }};
        GRANT SELECT ON halite.restore_points TO {{ u.backup.username }};
        COMMIT;
        SQL
    - runas: postgres
    - unless: psql -qAt -d {{ u.app.database }} -c "SELECT has_table_privilege('{{ u.backup.username }}', 'halite.restore_points', 'SELECT')" 2>/dev/null | grep -qx t
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - postgres_user: patroni-role-backup
      - postgres_database: patroni-database-app
{%- endif %}

{%- if hl.roles.get('monitoring') %}
{#- The exporters' login (monitoring.exporters): PostgreSQL's statistics through pg_monitor,
    nothing else; PgBouncer lists it in stats_users. #}
patroni-role-monitor:
  postgres_user.present:
    - name: {{ u.monitor.username }}
    - password: {{ u.monitor.password|json }}
    - encrypted: scram-sha-256
    - login: True
    - groups: pg_monitor
    - user: postgres
    - onlyif:
      - fun: patroni.is_leader
    - require:
      - patroni_cluster: patroni-cluster-healthy
{%- endif %}
