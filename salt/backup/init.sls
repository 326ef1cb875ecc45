# The backup host: the repository (pgBackRest), the cluster's PostgreSQL
# binaries for the restore drill, and the scheduled backups.
include:
  - postgresql.install
  - pgbackrest
  - backup.repo
  - backup.timers
