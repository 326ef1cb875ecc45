{%- from "map.jinja" import hl with context %}
{%- set ex = hl.host.exporters %}
{%- set p = hl.monitoring_paths %}
# The exporters Prometheus scrapes (on the host's cluster address; nftables lets only the
# monitoring host in): Debian's node-exporter on every host; PostgreSQL's and PgBouncer's
# on db hosts, with the users.monitor login; on the backup host, the last backup's time
# for node-exporter's textfile collector. Patroni, etcd and HAProxy serve their own /metrics.
{%- if ex.cert_files %}
include:
  - tls  # the certificates whose end is exported (a renewal re-reads them)
{%- endif %}

monitoring-node-exporter-pkg:
  pkg.installed:
    - pkgs: {{ hl.pkgs.node_exporter|json }}
    - install_recommends: False

monitoring-node-exporter-textfile-dir:
  file.directory:
    - name: {{ p.textfile_dir }}
    - user: prometheus
    - group: prometheus
    - mode: "0755"
    - makedirs: True
    - require:
      - pkg: monitoring-node-exporter-pkg

monitoring-node-exporter-args:
  file.managed:
    - name: /etc/default/prometheus-node-exporter
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        ARGS="{{ ex.node_args }}"
    - mode: "0644"
    - require:
      - pkg: monitoring-node-exporter-pkg

monitoring-node-exporter-service:
  service.running:
    - name: prometheus-node-exporter
    - enable: True
    - watch:
      - file: monitoring-node-exporter-args
    - require:
      - file: monitoring-node-exporter-textfile-dir

{%- if ex.cert_files %}
{%- set cert_metrics = p.cert_metrics ~ ' ' ~ p.textfile_dir ~ '/halite_tls.prom ' ~ ex.cert_files|join(' ') %}

# the end of this host's certificates of halite's CA, every hour (rule CertificateExpiresSoon)
monitoring-cert-metrics-script:
  file.managed:
    - name: {{ p.cert_metrics }}
    - source: salt://monitoring/files/cert-metrics.py
    - makedirs: True
    - mode: "0755"

monitoring-cert-metrics-service:
  file.managed:
    - name: /etc/systemd/system/halite-cert-metrics.service
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        [Unit]
        Description=halite: the end of this host's certificates, for node-exporter
        [Service]
        Type=oneshot
        ExecStart={{ cert_metrics }}
    - mode: "0644"

monitoring-cert-metrics-timer:
  file.managed:
    - name: /etc/systemd/system/halite-cert-metrics.timer
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        [Unit]
        Description=halite: the end of this host's certificates, every hour
        [Timer]
        OnCalendar=hourly
        [Install]
        WantedBy=timers.target
    - mode: "0644"

monitoring-cert-metrics-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: monitoring-cert-metrics-service
      - file: monitoring-cert-metrics-timer

monitoring-cert-metrics-active:
  service.running:
    - name: halite-cert-metrics.timer
    - enable: True
    - require:
      - module: monitoring-cert-metrics-reload
      - file: monitoring-node-exporter-textfile-dir

# again whenever a certificate changes (salt/tls renews it): the service's command, run here so
# that a failure shows the script's own error. Once, in a lab deploy, `systemctl start` of the
# service failed within 26 ms ("the control process exited with error code"; the lab and its
# journal were gone before the cause was found, and the next deploy ran it in 1 s): a second
# and third try ride out such a passing failure, a lasting one still fails the step.
monitoring-cert-metrics-now:
  cmd.run:
    - name: {{ cert_metrics }}
    - retry:
        attempts: 3
        interval: 2
    - onchanges:
      - file: monitoring-cert-metrics-script
      - file: monitoring-cert-metrics-service
      - file: halite-tls-cert
      - file: halite-tls-ca
    - require:
      - service: monitoring-cert-metrics-active
{%- endif %}

{%- if ex.backup_metrics %}

# the repository's newest backup of each type, every 5 minutes (rule BackupTooOld)
monitoring-backup-metrics-script:
  file.managed:
    - name: {{ p.backup_metrics }}
    - source: salt://monitoring/files/backup-metrics.py
    - makedirs: True
    - mode: "0755"

monitoring-backup-metrics-service:
  file.managed:
    - name: /etc/systemd/system/halite-backup-metrics.service
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        [Unit]
        Description=halite: the last backups' times for node-exporter (pgBackRest info)
        [Service]
        Type=oneshot
        ExecStart={{ p.backup_metrics }} {{ p.textfile_dir }}/halite_backup.prom
    - mode: "0644"

monitoring-backup-metrics-timer:
  file.managed:
    - name: /etc/systemd/system/halite-backup-metrics.timer
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        [Unit]
        Description=halite: the last backups' times for node-exporter, every 5 minutes
        [Timer]
        OnCalendar=*:0/5
        AccuracySec=10s
        [Install]
        WantedBy=timers.target
    - mode: "0644"

monitoring-backup-metrics-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: monitoring-backup-metrics-service
      - file: monitoring-backup-metrics-timer

monitoring-backup-metrics-active:
  service.running:
    - name: halite-backup-metrics.timer
    - enable: True
    - require:
      - module: monitoring-backup-metrics-reload
      - file: monitoring-node-exporter-textfile-dir

# the file exists from the first apply on, not five minutes later
monitoring-backup-metrics-first:
  cmd.run:
    - name: systemctl start halite-backup-metrics.service
    - onchanges:
      - file: monitoring-backup-metrics-script
      - file: monitoring-backup-metrics-service
    - require:
      - service: monitoring-backup-metrics-active
{%- endif %}

{%- if 'db' in hl.host.roles %}

monitoring-postgres-exporter-pkg:
  pkg.installed:
    - pkgs: {{ hl.pkgs.postgres_exporter|json }}
    - install_recommends: False

monitoring-postgres-exporter-password:
  file.managed:
    - name: {{ p.postgres_exporter_password }}
    - contents: {{ ex.postgres_password|json }}
    - contents_newline: False
    - user: prometheus
    - group: prometheus
    - mode: "0600"
    - show_changes: False
    - makedirs: True  # Debian's postgres exporter does not make /etc/prometheus
    - require:
      - pkg: monitoring-postgres-exporter-pkg

monitoring-postgres-exporter-env:
  file.managed:
    - name: /etc/default/prometheus-postgres-exporter
    - contents: {{ ex.postgres_env|json }}
    - contents_newline: False
    - mode: "0644"
    - require:
      - pkg: monitoring-postgres-exporter-pkg

# Debian's package starts the exporter at once with an empty DATA_SOURCE_NAME: it exits, its
# unit restarts it every 100 ms until systemd's start limit marks it failed, and for the next
# 10 s a start is refused ("attempted too often"). Right after the install, that loop is
# stopped and its count cleared before our first start (a converged host has nothing to do).
monitoring-postgres-exporter-reset:
  cmd.run:
    - name: systemctl stop prometheus-postgres-exporter; systemctl reset-failed prometheus-postgres-exporter
    - onchanges:
      - pkg: monitoring-postgres-exporter-pkg

monitoring-postgres-exporter-service:
  service.running:
    - name: prometheus-postgres-exporter
    - enable: True
    - require:
      - cmd: monitoring-postgres-exporter-reset
    - watch:
      - file: monitoring-postgres-exporter-password
      - file: monitoring-postgres-exporter-env

monitoring-pgbouncer-exporter-pkg:
  pkg.installed:
    - pkgs: {{ hl.pkgs.pgbouncer_exporter|json }}
    - install_recommends: False

monitoring-pgbouncer-exporter-wrapper:
  file.managed:
    - name: {{ p.pgbouncer_exporter }}
    - source: salt://monitoring/files/pgbouncer-exporter.py
    - makedirs: True
    - mode: "0755"

monitoring-pgbouncer-exporter-pgpass:
  file.managed:
    - name: {{ p.pgbouncer_exporter_pgpass }}
    - contents: {{ ex.pgbouncer_pgpass|json }}
    - contents_newline: False
    - user: postgres
    - group: postgres
    - mode: "0600"
    - makedirs: True
    - show_changes: False

# Debian's unit runs as postgres and BindsTo pgbouncer (it stops and starts with it); ours
# adds the login, the listen address and halite's wrapper (see the file)
monitoring-pgbouncer-exporter-dropin:
  file.managed:
    - name: /etc/systemd/system/prometheus-pgbouncer-exporter.service.d/halite.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (halite monitoring.exporters)
        [Service]
{%- for key, value in ex.pgbouncer_environment|dictsort %}
        Environment="{{ key }}={{ value }}"
{%- endfor %}
        ExecStart=
        ExecStart=/usr/bin/python3 {{ p.pgbouncer_exporter }}
        Restart=on-failure
        RestartSec=5
    - mode: "0644"

monitoring-pgbouncer-exporter-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: monitoring-pgbouncer-exporter-dropin

monitoring-pgbouncer-exporter-service:
  service.running:
    - name: prometheus-pgbouncer-exporter
    - enable: True
    - require:
      - pkg: monitoring-pgbouncer-exporter-pkg
      - module: monitoring-pgbouncer-exporter-reload
    - watch:
      - file: monitoring-pgbouncer-exporter-wrapper
      - file: monitoring-pgbouncer-exporter-pgpass
      - file: monitoring-pgbouncer-exporter-dropin
{%- endif %}
