{%- from "map.jinja" import hl with context %}
# Gate: one running leader and every other member streaming within the lag limit.
patroni-cluster-healthy-gate:
  patroni_cluster.healthy:
    - members: {{ hl.roles.db|length }}
    - max_lag: {{ hl.patroni.dcs.maximum_lag_on_failover }}
    - timeout: 300
