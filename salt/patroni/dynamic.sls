{%- from "map.jinja" import hl with context %}
# Dynamic configuration as state: pillar halite:patroni:dcs (over the timing
# profile) and halite:postgresql:parameters are applied through Patroni's
# PATCH /config. Members left with pending_restart are restarted by
# orch.rolling_restart (replicas first, the leader last after a switchover).
include:
  - patroni.service

patroni-dynamic-config:
  patroni_cluster.dynamic_config:
    - config: {{ hl.host.patroni_dcs|json }}
    - require:
      - patroni_cluster: patroni-cluster-healthy
