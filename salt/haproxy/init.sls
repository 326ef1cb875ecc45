# HAProxy: one port for writes (the primary), one for reads (the replicas).
include:
  - haproxy.install
  - haproxy.config
  - haproxy.service
