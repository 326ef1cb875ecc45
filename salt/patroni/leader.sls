{%- from "map.jinja" import hl with context %}
# Gate: this member is Patroni's running leader (orch.restore: the restored
# member has taken the cluster over; its replicas are not there yet).
patroni-leader-gate:
  patroni_cluster.healthy:
    - members: 1
    - max_lag: {{ hl.patroni.dcs.maximum_lag_on_failover }}
    - timeout: 600
