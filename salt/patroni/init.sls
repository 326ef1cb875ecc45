# Patroni 4.x from PyPI in its own virtualenv, managing PostgreSQL.
include:
  - patroni.install
  - patroni.tls
  - patroni.config
  - patroni.etcd_leader  # the callback script exists before Patroni first starts
  - patroni.service
  - patroni.dynamic
  - patroni.users
