{%- from "map.jinja" import hl with context %}
{%- set dcs = hl.patroni.dcs %}
# Dynamic configuration as state: pillar halite:patroni:dcs (over the timing
# profile) and halite:postgresql:parameters are applied through Patroni's
# PATCH /config. Members left with pending_restart are restarted by
# orch.rolling_restart (replicas first, the leader last after a switchover).
include:
  - patroni.service

patroni-dynamic-config:
  patroni_cluster.dynamic_config:
    - config:
{%- for key in ['ttl', 'loop_wait', 'retry_timeout', 'maximum_lag_on_failover', 'primary_start_timeout',
                'synchronous_mode', 'synchronous_mode_strict', 'failsafe_mode'] if key in dcs %}
        {{ key }}: {{ dcs[key]|json }}
{%- endfor %}
        postgresql:
          use_pg_rewind: {{ dcs.postgresql.use_pg_rewind|json }}
          use_slots: {{ dcs.postgresql.use_slots|json }}
          parameters: {{ hl.postgresql.parameters|json }}
    - require:
      - patroni_cluster: patroni-cluster-healthy
