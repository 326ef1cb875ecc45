# The backup host: the repository (pgBackRest), the cluster's PostgreSQL
# binaries for the restore drill, and the scheduled backups.
include:
  # halite's CA: the restore points' libpq service verifies the members with it (verify-full)
  - tls
  - postgresql.install
  - pgbackrest
  - backup.repo
  - backup.timers
