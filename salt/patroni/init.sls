# Patroni 4.x from PyPI in its own virtualenv, managing PostgreSQL.
include:
  - patroni.install
  - patroni.config
  - patroni.service
  - patroni.etcd_leader
  - patroni.dynamic
  - patroni.users
