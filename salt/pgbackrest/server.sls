# pgBackRest's TLS server (Debian's unit pgbackrest.service, as postgres):
# restarted when its configuration or certificate changes.
include:
  - pgbackrest.config

pgbackrest-server-running:
  service.running:
    - name: pgbackrest
    - enable: True
    - watch:
      - sls: pgbackrest.config
