{%- from "map.jinja" import hl with context %}
# RedHat family: SELinux enforcing, with the booleans and port labels the
# stack needs (HAProxy connects to any port; Patroni, etcd, PgBouncer listen
# on their own ports).
include:
  - base.packages

base-selinux-enforcing:
  selinux.mode:
    - name: enforcing

base-selinux-haproxy-connect-any:
  selinux.boolean:
    - name: haproxy_connect_any
    - value: True
    - persist: True

{%- set ports = {
    'postgresql_port_t': [hl.pgbouncer.port],
    'http_port_t': [hl.patroni.restapi.port, hl.haproxy.stats_port],
    'etcd_port_t': [hl.etcd.client_port, hl.etcd.peer_port],
} %}
{%- for type, nums in ports|dictsort %}
{%- for port in nums %}
base-selinux-port-{{ port }}:
  selinux.port_policy_present:
    - name: tcp/{{ port }}
    - sel_type: {{ type }}
    - require:
      - sls: base.packages
{%- endfor %}
{%- endfor %}
