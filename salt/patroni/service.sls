{%- from "map.jinja" import hl with context %}
# Patroni's unit starts PostgreSQL. A changed patroni.yml is reloaded (SIGHUP),
# never restarted: restarts of PostgreSQL go through orch.rolling_restart.
include:
  - patroni.tls
  - patroni.config
  - etcd

patroni-unit-file:
  file.managed:
    - name: /etc/systemd/system/patroni.service
    - source: salt://patroni/files/patroni.service.jinja
    - template: jinja
    - context:
        hl: {{ hl|json }}
    - mode: "0644"

patroni-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: patroni-unit-file

patroni-service-running:
  service.running:
    - name: patroni
    - enable: True
    - reload: True
    - require:
      - cmd: patroni-systemd-reload
      - sls: etcd
    - watch:
      - file: patroni-config-file
{%- if hl.tls_on.etcd or hl.tls_on.patroni_api %}
      - file: halite-tls-key-postgres
{%- endif %}

patroni-cluster-healthy:
  patroni_cluster.healthy:
    - members: {{ hl.roles.db|length }}
    - max_lag: {{ hl.patroni.dcs.maximum_lag_on_failover }}
    - timeout: 300
    - require:
      - service: patroni-service-running
