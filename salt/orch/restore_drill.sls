{#- orch.restore_drill: prove a backup restores, without touching the cluster. By default a
    fresh restore point is made on the primary (its tables' row counts and checksums are kept
    with it), the backup host restores the repository to that point into a scratch folder,
    starts it on a private port (a Unix socket only), compares every table, reports and
    removes the copy.
    salt-run state.orchestrate orch.restore_drill
    salt-run state.orchestrate orch.restore_drill pillar='{"target": {"name": "before-migration-42"}}'
    salt-run state.orchestrate orch.restore_drill pillar='{"target": {"latest": true}}'  # restores, counts rows #}
{%- set db = salt['pillar.get']('halite:roles:db') %}
{%- set backup = salt['pillar.get']('halite:roles:backup') or [] %}
{%- set target = salt['pillar.get']('target', {}) %}
{%- if not backup %}
{{- raise("orch.restore_drill: the topology has no host with the role backup") }}
{%- endif %}
{%- if target is not mapping %}
{{- raise("orch.restore_drill: target must be a mapping such as {\"name\": \"...\"}, {\"time\": \"...\"}, {\"lsn\": \"...\"} or {\"latest\": true}") }}
{%- endif %}
{%- set point = 'drill-' ~ salt['status.time']('%Y%m%dT%H%M%SZ') %}

{%- if not target %}
restore-drill-point:
  halite_ssh.function:
    - name: pgbackrest.restore_point
    - tgt: {{ db|join(',') }}
    - tgt_type: list
    - kwarg:
        name: {{ point }}
        database: {{ salt['pillar.get']('halite:users:app:database') }}
        only_primary: True
{%- set target = {"name": point} %}
{%- endif %}

restore-drill:
  halite_ssh.function:
    - name: pgbackrest.drill
    - tgt: {{ backup[0] }}
    - kwarg:
        stanza: {{ salt['pillar.get']('halite:backup:stanza') }}
        # JSON text: salt-ssh hands keyword values to the host as text
        target: {{ target|json|json }}
        database: {{ salt['pillar.get']('halite:users:app:database') }}
        config: {{ salt['pillar.get']('halite:pgbackrest_paths:drill_conf') }}
        port: {{ salt['pillar.get']('halite:backup:drill_port') }}
        pg_bin: {{ salt['pillar.get']('halite:pg_paths')[backup[0]].pg_bindir }}
        # the restore point's WAL may still be on its way to the repository
        archive_wait: 120
{%- if salt['pillar.get']('set') %}
        set: {{ salt['pillar.get']('set')|json }}
{%- endif %}
{%- if not salt['pillar.get']('target') %}
    - require:
      - halite_ssh: restore-drill-point
{%- endif %}
