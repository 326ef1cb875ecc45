# PostgreSQL binaries, and postgres's copy of the host's TLS key: Patroni owns the
# data directory and the server.
include:
  - postgresql.install
  - postgresql.tls
