{#- orch.rolling_restart: apply pillar's dynamic configuration, then restart the
    members Patroni flags pending_restart: replicas first, the leader last after
    a switchover to the synchronous standby.
    salt-run state.orchestrate orch.rolling_restart
    salt-run state.orchestrate orch.rolling_restart pillar='{"pending_only": false}'  # everyone #}
{%- set db = salt['pillar.get']('halite:roles:db') %}
{%- set pending_only = salt['pillar.get']('pending_only', True) %}

rolling-restart-healthy-before:
  salt.state:
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: patroni.healthy

rolling-restart-dynamic-config:
  salt.state:
    - tgt: {{ db[0] }}
    - ssh: True
    - sls: patroni.dynamic
    - require:
      - salt: rolling-restart-healthy-before

rolling-restart-members:
  salt.function:
    - name: patroni.rolling_restart
    - tgt: {{ db[0] }}
    - ssh: True
    - kwarg:
        pending_only: {{ pending_only }}
        timeout: 300
    - require:
      - salt: rolling-restart-dynamic-config

rolling-restart-healthy-after:
  salt.state:
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: patroni.healthy
    - require:
      - salt: rolling-restart-members
