{%- from "map.jinja" import hl with context %}
# Gate: etcd answers with every member of the topology started and a leader.
etcd-cluster-healthy:
  etcd_health.healthy:
    - members: {{ hl.roles.db|length }}
    - timeout: 180
