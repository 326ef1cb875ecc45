# The legacy server: the car market's original, standalone PostgreSQL (the
# project's starting point), a cluster of the distribution's packages on a
# port of its own. It publishes (wal_level=logical) so that orch.migrate can
# move its data onto the HA cluster.
include:
  - legacy.install
  - legacy.config
  - legacy.service
  - legacy.users
