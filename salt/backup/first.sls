{%- from "map.jinja" import hl with context %}
{%- set stanza = hl.host.pgbackrest.stanza %}
# A new cluster's first full backup, so that point-in-time recovery has a base
# from the start (later ones come from the timers or orch.backup).
include:
  - backup.stanza

backup-first-full:
  cmd.run:
    - name: pgbackrest --stanza={{ stanza }} --type=full backup
    - runas: postgres
    - unless: >-
        pgbackrest --stanza={{ stanza }} --output=json info |
        python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)[0]['backup'] else 1)"
    - require:
      - cmd: backup-stanza-created
