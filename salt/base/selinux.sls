{%- from "map.jinja" import hl with context %}
{%- set se = hl.platform.selinux %}
{%- if not se %}
{{- raise("halite: base.selinux is for the RedHat family; " ~ grains.get("id") ~ " runs " ~ hl.host.os_family) }}
{%- endif %}
# RedHat family: SELinux enforcing, with the booleans and port labels of
# halite.platforms (SELINUX_BOOLEANS, SELINUX_PORTS: only types and booleans
# RHEL 8/9's targeted policy defines; ports the policy labels already are left
# alone). haproxy_connect_any lets HAProxy reach the poolers and the members'
# APIs and bind its stats port. etcd gets no label: no policy has an etcd port
# type, and etcd, like Patroni and PgBouncer, runs unconfined from its unit.
include:
  - base.packages

base-selinux-enforcing:
  selinux.mode:
    - name: enforcing
{%- for name, value in se.booleans|dictsort %}

base-selinux-{{ name|replace('_', '-') }}:
  selinux.boolean:
    - name: {{ name }}
    - value: {{ value }}
    - persist: True
{%- endfor %}
{%- for p in se.ports %}

# {{ p.setting }}
base-selinux-port-{{ p.port }}:
  selinux.port_policy_present:
    - name: tcp/{{ p.port }}
    - sel_type: {{ p.type }}
    - require:
      - sls: base.packages
{%- endfor %}
