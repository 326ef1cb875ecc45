# pgBackRest on a db host and on the backup host: the package, its
# configuration (halite.view.pgbackrest_view), halite's TLS certificates and
# pgBackRest's TLS server, through which the two sides reach each other.
include:
  - pgbackrest.install
  - pgbackrest.config
  - pgbackrest.server
