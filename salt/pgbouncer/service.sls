{%- from "map.jinja" import hl with context %}
include:
  - pgbouncer.config

# Restarted, not reloaded, on a config change: PgBouncer does not re-bind
# listen_addr/listen_port on reload (the package starts it on 127.0.0.1 only).
# Also on a renewed certificate, key or CA: it reads them when it starts.
# Debian's unit does not restart a PgBouncer that died: ours does (HAProxy sends the
# primary's writes straight to PostgreSQL meanwhile, halite.view.haproxy_backends).
# Its open-file limit holds max_client_conn clients and their server connections
# (halite.view.pgbouncer_nofile); Debian's unit leaves systemd's 1024.
pgbouncer-restart-dropin:
  file.managed:
    - name: /etc/systemd/system/pgbouncer.service.d/halite.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (halite pgbouncer.service)
        [Service]
        Restart=on-failure
        RestartSec=1
        LimitNOFILE={{ hl.host.pgbouncer_nofile }}
    - mode: "0644"

pgbouncer-restart-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: pgbouncer-restart-dropin

pgbouncer-service-running:
  service.running:
    - name: pgbouncer
    - enable: True
    - require:
      - module: pgbouncer-restart-reload
    - watch:
      - sls: pgbouncer.config
      - file: halite-tls-ca
      - file: halite-tls-cert
      - file: halite-tls-key-postgres
