{#- orch.migrate: move the car market from the legacy server onto the cluster,
    writes stopped only from the freeze to the switch.
    salt-run state.orchestrate orch.migrate

    1. the schema on the cluster (migrate through HAProxy, from an app host)
    2. pg_move.move on the cluster's leader (web.move): copy, freeze the app's
       writes on the legacy server, catch up, compare, sync sequences. A failed
       check unfreezes the legacy server and stops here: the site stays on it.
    3. the switch (web.switch, pillar web:database_target=cluster): site.env
       and the target file rewritten, gunicorn reloaded. It refuses unless the
       legacy server records the finished move.
    4. the gate (web.check): the site answers from the cluster; it reports the
       write downtime, freeze to first answer.
    The target file keeps the app hosts on the cluster for every later
    state.apply. Run again, pg_move reports the earlier move (already_moved)
    and the switch finds the hosts on the cluster: nothing is copied twice. #}
{%- set roles = salt['pillar.get']('halite:roles') %}
{%- set apps = roles.app|join(',') %}
{%- set to_cluster = {'halite': {'web': {'database_target': 'cluster'}}} %}

migrate-cluster-schema:
  salt.state:
    - tgt: {{ roles.app[0] }}
    - ssh: True
    - sls: web.schema
    - pillar: {{ to_cluster|json }}

migrate-move-database:
  salt.state:
    - tgt: {{ roles.db|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: web.move
    - timeout: {{ salt['pillar.get']('halite:move:sync_timeout', 1800) + 600 }}
    - require:
      - salt: migrate-cluster-schema

migrate-switch-site:
  salt.state:
    - tgt: {{ apps }}
    - tgt_type: list
    - ssh: True
    - sls: web.switch
    - pillar: {{ to_cluster|json }}
    - require:
      - salt: migrate-move-database

migrate-site-on-cluster:
  salt.state:
    - tgt: {{ apps }}
    - tgt_type: list
    - ssh: True
    - sls: web.check
    - pillar: {{ {'halite': {'web': {'database_target': 'cluster'}, 'move': {'report_downtime': True}}}|json }}
    - require:
      - salt: migrate-switch-site

# salt-ssh leaves its thin directory on every host, the last state run's pillar (secrets
# included) in its state tarball: remove it, whatever happened above (the next run sends
# salt-ssh again).
migrate-wipe-salt-ssh:
  halite_ssh.function:
    - name: test.true
    - tgt: '*'
    - wipe: True
    - order: last
