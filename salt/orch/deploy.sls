{#- orch.deploy: lay the whole stack down in order, each step behind a health gate.
    salt-run state.orchestrate orch.deploy #}
{%- set roles = salt['pillar.get']('halite:roles') %}
{%- set db = roles.db|join(',') %}
{%- set proxies = roles.haproxy|join(',') %}
{%- set backup = roles.get('backup') or [] %}
{%- set monitoring = roles.get('monitoring') or [] %}

deploy-base:
  salt.state:
    - tgt: '*'
    - ssh: True
    - sls: base

deploy-etcd:
  salt.state:
    - tgt: {{ db }}
    - tgt_type: list
    - ssh: True
    - sls: [etcd, etcd.healthy]
    - require:
      - salt: deploy-base

{%- if backup %}
# The repository's host first: its pgBackRest server must answer when the new
# primary archives its first WAL and the replicas' restore_command asks.
deploy-repository:
  salt.state:
    - tgt: {{ backup|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: backup
    - require:
      - salt: deploy-base

{% endif %}
deploy-patroni:
  salt.state:
    - tgt: {{ db }}
    - tgt_type: list
    - ssh: True
    - sls: [postgresql{% if backup %}, pgbackrest{% endif %}, patroni]
    - require:
      - salt: deploy-etcd
{%- if backup %}
      - salt: deploy-repository

# The stanza once the cluster runs, a first full backup, and the gate (a fresh
# backup, a continuous WAL archive, pgbackrest check).
deploy-backup:
  salt.state:
    - tgt: {{ backup|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: [backup.stanza, backup.first, backup.healthy]
    - require:
      - salt: deploy-patroni
{%- endif %}

deploy-pgbouncer:
  salt.state:
    - tgt: {{ db }}
    - tgt_type: list
    - ssh: True
    - sls: pgbouncer
    - require:
      - salt: deploy-patroni

deploy-haproxy:
  salt.state:
    - tgt: {{ proxies }}
    - tgt_type: list
    - ssh: True
    - sls: [haproxy, haproxy.roundtrip]
    - require:
      - salt: deploy-pgbouncer

# The car market's starting point: the standalone (legacy) server and the site
# on it. orch.migrate then moves it onto the cluster.
deploy-site-legacy:
  salt.state:
    - tgt: {{ (roles.get('legacy_db') or [])|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: legacy
    - require:
      - salt: deploy-base

deploy-site-web:
  salt.state:
    - tgt: {{ roles.app|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: [web, web.check]
    - require:
      - salt: deploy-site-legacy
      - salt: deploy-haproxy

{%- if monitoring %}
# The exporters once what they watch runs (every host), then Prometheus and Alertmanager,
# and the gate: Prometheus scrapes every target.
deploy-exporters:
  salt.state:
    - tgt: '*'
    - ssh: True
    - sls: monitoring.exporters
    - require:
      - salt: deploy-haproxy
      - salt: deploy-site-web
{%- if backup %}
      - salt: deploy-backup
{%- endif %}

deploy-monitoring:
  salt.state:
    - tgt: {{ monitoring|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: [monitoring.server, monitoring.dashboard, monitoring.healthy]
    - require:
      - salt: deploy-exporters

{% endif %}
# salt-ssh leaves its thin directory on every host, the last state run's pillar (secrets
# included) in its state tarball: remove it, whatever happened above (the next run sends
# salt-ssh again).
deploy-wipe-salt-ssh:
  halite_ssh.function:
    - name: test.true
    - tgt: '*'
    - wipe: True
    - order: last
