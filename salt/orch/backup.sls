{#- orch.backup: take a backup now (from a standby where one is healthy), then the gate.
    salt-run state.orchestrate orch.backup                             # incremental
    salt-run state.orchestrate orch.backup pillar='{"type": "full"}'   # full, diff or incr #}
{%- set backup = salt['pillar.get']('halite:roles:backup') or [] %}
{%- set type = salt['pillar.get']('type', 'incr') %}
{%- if not backup %}
{{- raise("orch.backup: the topology has no host with the role backup") }}
{%- endif %}
{%- if type not in ['full', 'diff', 'incr'] %}
{{- raise("orch.backup: type is " ~ type ~ "; full, diff or incr") }}
{%- endif %}

backup-now:
  halite_ssh.function:
    - name: pgbackrest.backup
    - tgt: {{ backup[0] }}
    - kwarg:
        stanza: {{ salt['pillar.get']('halite:backup:stanza') }}
        type: {{ type }}

backup-fresh-after:
  salt.state:
    - tgt: {{ backup[0] }}
    - ssh: True
    - sls: backup.healthy
    - require:
      - halite_ssh: backup-now
