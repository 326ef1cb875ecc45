# PgBouncer on each db host, in front of the local PostgreSQL.
include:
  - pgbouncer.install
  - pgbouncer.config
  - pgbouncer.service
