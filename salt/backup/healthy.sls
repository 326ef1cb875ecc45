{%- from "map.jinja" import hl with context %}
# Gate: a backup younger than backup.max_age, a continuous WAL archive, and
# pgbackrest check (a WAL switch on the primary reaches the repository).
backup-fresh-gate:
  backup_health.fresh:
    - stanza: {{ hl.host.pgbackrest.stanza }}
    - max_age: {{ hl.backup.max_age }}
    - timeout: 300
