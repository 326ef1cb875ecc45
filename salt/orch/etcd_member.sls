{#- orch.etcd_member: add a host's etcd member to the running cluster.
      salt-run state.orchestrate orch.etcd_member pillar='{"target": "db-04"}'
    With "replace": true the host's old member is removed first and its data
    directory moved aside, so that it joins again as a new member (a rebuilt
    host, or a member whose data is damaged):
      salt-run state.orchestrate orch.etcd_member pillar='{"target": "db-03", "replace": true}'
    The host must be a db host in the topology. Afterwards the other members
    take up the topology's member list one at a time, each behind the gate. #}
{%- set target = salt['pillar.get']('target') %}
{%- set replace = salt['pillar.get']('replace', False) %}
{%- set etcd_hosts = salt['pillar.get']('halite:roles:db', []) %}
{%- if not target %}
{{ raise("orch.etcd_member: say which host joins, e.g. pillar='{\"target\": \"db-03\"}'") }}
{%- elif target not in etcd_hosts %}
{{ raise("orch.etcd_member: " ~ target ~ " is not an etcd host (the db role) in the topology; etcd hosts: " ~ etcd_hosts|join(', ')) }}
{%- endif %}
{%- set others = etcd_hosts|reject('equalto', target)|list %}

# Firewalls first: the members must accept the (new) host's peer traffic.
etcd-member-base:
  salt.state:
    - tgt: {{ etcd_hosts|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: base

{%- if replace %}

etcd-member-reset:
  salt.state:
    - tgt: {{ target }}
    - ssh: True
    - sls: etcd.reset
    - require:
      - salt: etcd-member-base
{%- endif %}

etcd-member-join:
  salt.state:
    - tgt: {{ target }}
    - ssh: True
    - sls: [etcd.join, etcd.healthy]
    - pillar:
        halite:
          etcd:
            initial_cluster_state: existing
    - require:
      - salt: {{ 'etcd-member-reset' if replace else 'etcd-member-base' }}
{%- set ns = namespace(previous='etcd-member-join') %}
{%- for host in others %}

etcd-member-refresh-{{ host }}:
  salt.state:
    - tgt: {{ host }}
    - ssh: True
    - sls: [etcd, etcd.healthy]
    - require:
      - salt: {{ ns.previous }}
{%- set ns.previous = 'etcd-member-refresh-' ~ host %}
{%- endfor %}
