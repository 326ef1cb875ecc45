include:
  - pgbouncer.config

pgbouncer-service-running:
  service.running:
    - name: pgbouncer
    - enable: True
    - reload: True
    - watch:
      - sls: pgbouncer.config
