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
{%- set paths = salt['pillar.get']('halite:pg_paths') %}
{%- set pg_port = salt['pillar.get']('halite:postgresql:port') %}
{%- set api_port = salt['pillar.get']('halite:patroni:restapi:port') %}
{#- salt-ssh gives a function called directly no pillar on the host: paths and ports are passed #}
{#- etcd's client URLs and the TLS files root's clients use (halite.view.tls_clients) #}
{%- set tls_clients = salt['pillar.get']('halite:tls_clients') %}
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
  halite_ssh.function:
    - name: pitr.plan
    - tgt: {{ member }}
    - kwarg:
        stanza: {{ stanza }}
        # JSON text: salt-ssh hands keyword values to the host as text
        target: {{ target|json|json }}
        database: {{ salt['pillar.get']('halite:users:app:database') }}
        socket_dir: {{ paths[member].pg_socket_dir }}
        port: {{ pg_port }}

restore-stop-replicas:
  halite_ssh.function:
    - name: pitr.stop
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - kwarg:
        role: replica
        pg_path: {{ paths[member].pg_datadir }}
        bin_dir: {{ paths[member].pg_bindir }}
        api_port: {{ api_port }}
{%- if tls_clients.patroni_api_ca %}
        api_ca_file: {{ tls_clients.patroni_api_ca }}
{%- endif %}
    - require:
      - halite_ssh: restore-plan

restore-stop-leader:
  halite_ssh.function:
    - name: pitr.stop
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - kwarg:
        role: any
        pg_path: {{ paths[member].pg_datadir }}
        bin_dir: {{ paths[member].pg_bindir }}
        api_port: {{ api_port }}
{%- if tls_clients.patroni_api_ca %}
        api_ca_file: {{ tls_clients.patroni_api_ca }}
{%- endif %}
    - require:
      - halite_ssh: restore-stop-replicas

restore-remove-cluster:
  halite_ssh.function:
    - name: pitr.remove_cluster
    - tgt: {{ member }}
    - kwarg:
        endpoints: {{ tls_clients.etcd_urls|join(',') }}
{%- if tls_clients.etcd %}
        cacert: {{ tls_clients.etcd.cacert }}
        cert: {{ tls_clients.etcd.cert }}
        key: {{ tls_clients.etcd.key }}
{%- endif %}
        namespace: {{ salt['pillar.get']('halite:patroni:namespace') }}
        scope: {{ salt['pillar.get']('halite:patroni:scope') }}
    - require:
      - halite_ssh: restore-stop-leader

restore-data:
  halite_ssh.function:
    - name: pitr.restore
    - tgt: {{ member }}
    - kwarg:
        stanza: {{ stanza }}
        pg_path: {{ paths[member].pg_datadir }}
    - require:
      - halite_ssh: restore-remove-cluster

restore-recover:
  halite_ssh.function:
    - name: pitr.recover
    - tgt: {{ member }}
    - kwarg:
        pg_path: {{ paths[member].pg_datadir }}
        bin_dir: {{ paths[member].pg_bindir }}
        port: {{ pg_port }}
        socket_dir: {{ paths[member].pg_socket_dir }}
    - require:
      - halite_ssh: restore-data

restore-leader-start:
  halite_ssh.function:
    - name: service.start
    - tgt: {{ member }}
    - arg:
      - patroni
    - require:
      - halite_ssh: restore-recover

restore-leader-up:
  salt.state:
    - tgt: {{ member }}
    - ssh: True
    - sls: patroni.leader
    - require:
      - halite_ssh: restore-leader-start

{%- if others %}
restore-replicas-wipe:
  halite_ssh.function:
    - name: pitr.wipe
    - tgt: {{ others|join(',') }}
    - tgt_type: list
    - kwarg:
        pg_path: {{ paths[member].pg_datadir }}
        confirm: True
    - require:
      - salt: restore-leader-up

restore-replicas-start:
  halite_ssh.function:
    - name: service.start
    - tgt: {{ others|join(',') }}
    - tgt_type: list
    - arg:
      - patroni
    - require:
      - halite_ssh: restore-replicas-wipe
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
      - halite_ssh: restore-replicas-start
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
