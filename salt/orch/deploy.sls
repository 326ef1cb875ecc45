{#- orch.deploy: lay the whole stack down in order, each step behind a health gate.
    salt-run state.orchestrate orch.deploy

    The database chain (etcd, Patroni, PgBouncer, HAProxy, the site, the exporters) runs in
    order. Steps on hosts that chain does not touch yet run beside it (`parallel: True`): the
    old server and the backup repository's host, each where it shares no host with a step that
    may run meanwhile (halite.view.beside_chain). Each is declared before the chain and
    required by a later step of it, so the chain waits for it where it needs it, two steps
    never work on one host at once (salt-ssh's thin and state files on a host are not safe to
    share), and every parallel step has ended before the last step wipes salt-ssh off the
    hosts. Prometheus is not started early: it would scrape exporters that are not there yet
    and fire ScrapeTargetDown for every target while the stack is laid down. #}
{%- set roles = salt['pillar.get']('halite:roles') %}
{%- set db = roles.db|join(',') %}
{%- set proxies = roles.haproxy|join(',') %}
{%- set backup = roles.get('backup') or [] %}
{%- set monitoring = roles.get('monitoring') or [] %}
{%- set beside = salt['pillar.get']('halite:beside_chain') %}

deploy-base:
  salt.state:
    - tgt: '*'
    - ssh: True
    - sls: base

# The car market's starting point: the standalone (legacy) server and the site
# on it. orch.migrate then moves it onto the cluster.
deploy-site-legacy:
  salt.state:
    - tgt: {{ (roles.get('legacy_db') or [])|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: legacy
    - parallel: {{ beside }}
    - require:
      - salt: deploy-base

{%- if backup %}
# The repository's host: its pgBackRest server must answer when the new primary archives
# its first WAL and the replicas' restore_command asks.
deploy-repository:
  salt.state:
    - tgt: {{ backup|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: backup
    - parallel: {{ beside }}
    - require:
      - salt: deploy-base

{% endif %}
deploy-etcd:
  salt.state:
    - tgt: {{ db }}
    - tgt_type: list
    - ssh: True
    - sls: [etcd, etcd.healthy]
    - require:
      - salt: deploy-base

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
      - salt: deploy-site-legacy  # the old server may be this host: one step at a time on it

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
