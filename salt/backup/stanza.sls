{%- from "map.jinja" import hl with context %}
{%- set stanza = hl.host.pgbackrest.stanza %}
# The stanza (pgBackRest's record of the cluster in the repository), created
# once the members' servers answer; stanza-create is idempotent but writes, so
# it runs only when pgBackRest does not know the stanza yet.
include:
  - backup

backup-stanza-created:
  cmd.run:
    - name: pgbackrest --stanza={{ stanza }} stanza-create
    - runas: postgres
    - unless: >-
        pgbackrest --stanza={{ stanza }} --output=json info |
        python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)[0]['status']['code'] in (0, 2) else 1)"
    - require:
      - sls: backup
