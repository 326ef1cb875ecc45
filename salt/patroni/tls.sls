# Patroni runs as postgres: it shows postgres's copy of this host's key to etcd (a client
# certificate) and serves its REST API with it; the leader-away callback runs as postgres
# too. The copy is laid down once, by postgresql.tls (state halite-tls-key-postgres).
include:
  - postgresql.tls
