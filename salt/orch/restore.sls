{#- orch.restore: point-in-time recovery of the whole cluster.
    salt-run state.orchestrate orch.restore pillar='{"target": {"name": "before-migration-42"}}'
    salt-run state.orchestrate orch.restore pillar='{"target": {"time": "2026-11-30 08:15:00+00"}}'
    salt-run state.orchestrate orch.restore pillar='{"target": {"lsn": "0/5000028"}}'
    salt-run state.orchestrate orch.restore pillar='{"target": {"latest": true}}'
    Optional: "member": the db host restored first (default: the first db host).

    1. The target is checked on that member (pgBackRest's backups through the
       repository's server; a restore point's name in halite.restore_points):
       before the oldest backup, in the future or an unknown name stops here,
       with nothing changed.
    2. Patroni stops on the replicas, then on the leader (no failover to a
       member about to be overwritten); the cluster's keys leave etcd.
    3. The member is restored (pgbackrest restore --delta) and PostgreSQL alone
       replays to the target and promotes, on a new timeline.
    4. Patroni starts there and takes the cluster over as its leader; the
       other members are emptied and copy it.
    5. Gates: one leader and every replica streaming, the DCS settings, the
       write/read round trip through HAProxy, and the archive on the new
       timeline (pgbackrest check). #}
{%- set db = salt['pillar.get']('halite:roles:db') %}
{%- set proxies = salt['pillar.get']('halite:roles:haproxy') %}
{%- set backup = salt['pillar.get']('halite:roles:backup') or [] %}
{%- set target = salt['pillar.get']('target') %}
{%- set member = salt['pillar.get']('member', db[0]) %}
{%- set others = db|reject('equalto', member)|list %}
{%- set stanza = salt['pillar.get']('halite:backup:stanza') %}
{%- set addresses = salt['pillar.get']('halite:addresses') %}
{%- set endpoints = [] %}
{%- for h in db %}{% do endpoints.append(addresses[h] ~ ':' ~ salt['pillar.get']('halite:etcd:client_port')) %}{% endfor %}
{%- if not backup %}
{{- raise("orch.restore: the topology has no host with the role backup") }}
{%- endif %}
{%- if not target or target is not mapping %}
{{- raise("orch.restore: give pillar target: {\"name\": \"...\"}, {\"time\": \"...\"}, {\"lsn\": \"...\"} or {\"latest\": true}") }}
{%- endif %}
{%- if member not in db %}
{{- raise("orch.restore: member " ~ member ~ " is not a db host; db hosts: " ~ db|join(', ')) }}
{%- endif %}

restore-plan:
  salt.function:
    - name: pitr.plan
    - tgt: {{ member }}
    - ssh: True
    - kwarg:
        stanza: {{ stanza }}
        target: {{ target|json }}
        database: {{ salt['pillar.get']('halite:users:app:database') }}

restore-stop-replicas:
  salt.function:
    - name: pitr.stop
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - ssh: True
    - kwarg:
        role: replica
    - require:
      - salt: restore-plan

restore-stop-leader:
  salt.function:
    - name: pitr.stop
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - ssh: True
    - kwarg:
        role: any
    - require:
      - salt: restore-stop-replicas

restore-remove-cluster:
  salt.function:
    - name: pitr.remove_cluster
    - tgt: {{ member }}
    - ssh: True
    - kwarg:
        endpoints: {{ endpoints|join(',') }}
        namespace: {{ salt['pillar.get']('halite:patroni:namespace') }}
        scope: {{ salt['pillar.get']('halite:patroni:scope') }}
    - require:
      - salt: restore-stop-leader

restore-data:
  salt.function:
    - name: pitr.restore
    - tgt: {{ member }}
    - ssh: True
    - kwarg:
        stanza: {{ stanza }}
    - require:
      - salt: restore-remove-cluster

restore-recover:
  salt.function:
    - name: pitr.recover
    - tgt: {{ member }}
    - ssh: True
    - require:
      - salt: restore-data

restore-leader-start:
  salt.function:
    - name: service.start
    - tgt: {{ member }}
    - ssh: True
    - arg:
      - patroni
    - require:
      - salt: restore-recover

restore-leader-up:
  salt.state:
    - tgt: {{ member }}
    - ssh: True
    - sls: patroni.leader
    - require:
      - salt: restore-leader-start

{%- if others %}
restore-replicas-wipe:
  salt.function:
    - name: pitr.wipe
    - tgt: {{ others|join(',') }}
    - tgt_type: list
    - ssh: True
    - kwarg:
        confirm: True
    - require:
      - salt: restore-leader-up

restore-replicas-start:
  salt.function:
    - name: service.start
    - tgt: {{ others|join(',') }}
    - tgt_type: list
    - ssh: True
    - arg:
      - patroni
    - require:
      - salt: restore-replicas-wipe
{%- endif %}

restore-cluster-healthy:
  salt.state:
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: [patroni.healthy, patroni.dynamic]
    - require:
      - salt: restore-leader-up
{%- if others %}
      - salt: restore-replicas-start
{%- endif %}

restore-roundtrip:
  salt.state:
    - tgt: {{ proxies|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: haproxy.roundtrip
    - require:
      - salt: restore-cluster-healthy

restore-archive-healthy:
  salt.state:
    - tgt: {{ backup[0] }}
    - ssh: True
    - sls: backup.healthy
    - require:
      - salt: restore-cluster-healthy
