{#- orch.restore_point: a named restore point on the primary, with the row count and checksum
    of every table of the site's database at that instant (kept in halite.restore_points).
    salt-run state.orchestrate orch.restore_point pillar='{"name": "before-migration-42"}' #}
{%- set db = salt['pillar.get']('halite:roles:db') %}
{%- set name = salt['pillar.get']('name', '') %}
{%- if not name or name is not string or not name|regex_match('^([A-Za-z0-9._-]{1,63})$') %}
{{- raise("orch.restore_point: give pillar name: 1 to 63 letters, digits, '.', '_' or '-' (got " ~ name|string ~ ")") }}
{%- endif %}

restore-point-create:
  halite_ssh.function:
    - name: pgbackrest.restore_point
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - kwarg:
        name: {{ name|json }}
        database: {{ salt['pillar.get']('halite:users:app:database') }}
        only_primary: True
