# etcd: the consensus store Patroni keeps its leader lock in (v3 API only).
include:
  - etcd.install
  - etcd.tls
  - etcd.config
  - etcd.service
