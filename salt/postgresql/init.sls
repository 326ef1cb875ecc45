# PostgreSQL binaries only: Patroni owns the data directory and the server.
include:
  - postgresql.install
