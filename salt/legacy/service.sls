{%- from "map.jinja" import hl with context %}
{%- from "legacy/settings.jinja" import lg with context %}
{%- set unit = hl.services.legacy %}
# Restarted when its settings change (listen_addresses and wal_level need it),
# reloaded when only pg_hba.conf does.
include:
  - legacy.config

legacy-service-running:
  service.running:
    - name: {{ unit }}
    - enable: True
    - require:
      - file: legacy-hba-file
    - watch:
      - file: legacy-config-include-dir
      - file: legacy-config-file

legacy-hba-reload:
  cmd.run:
    - name: systemctl reload {{ unit }}
    - onchanges:
      - file: legacy-hba-file
    - require:
      - service: legacy-service-running
