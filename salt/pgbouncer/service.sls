include:
  - pgbouncer.config

# Restarted, not reloaded, on a config change: PgBouncer does not re-bind
# listen_addr/listen_port on reload (the package starts it on 127.0.0.1 only).
# Also on a renewed certificate, key or CA: it reads them when it starts.
pgbouncer-service-running:
  service.running:
    - name: pgbouncer
    - enable: True
    - watch:
      - sls: pgbouncer.config
      - file: halite-tls-ca
      - file: halite-tls-cert
      - file: halite-tls-key-postgres
