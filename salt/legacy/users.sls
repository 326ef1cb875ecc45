{%- from "map.jinja" import hl with context %}
{%- from "legacy/settings.jinja" import lg with context %}
{%- set u = hl.users %}
{%- set port = lg.port %}
# The app's role and database, and the move's user: a superuser (a publication
# FOR ALL TABLES, freezing the app's role and ending its sessions need it),
# allowed in by pg_hba from the db hosts only.
include:
  - legacy.service

legacy-role-app:
  postgres_user.present:
    - name: {{ u.app.username }}
    - password: {{ u.app.password|json }}
    - encrypted: scram-sha-256
    - login: True
    - user: postgres
    - db_port: {{ port }}
    - require:
      - service: legacy-service-running

legacy-role-move:
  postgres_user.present:
    - name: {{ u.legacy_move.username }}
    - password: {{ u.legacy_move.password|json }}
    - encrypted: scram-sha-256
    - login: True
    - superuser: True
    - replication: True
    - user: postgres
    - db_port: {{ port }}
    - require:
      - service: legacy-service-running

legacy-database-app:
  postgres_database.present:
    - name: {{ u.app.database }}
    - owner: {{ u.app.username }}
    - user: postgres
    - db_port: {{ port }}
    - require:
      - postgres_user: legacy-role-app
