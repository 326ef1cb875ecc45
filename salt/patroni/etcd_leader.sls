{%- from "map.jinja" import hl with context %}
{%- set script = hl.paths.etcd_leader_away %}
{%- set enabled = hl.etcd.get('keep_leader_off_primary', True) %}
# Keep etcd's leadership off the PostgreSQL primary's host: Patroni runs the
# script on every role change (see patroni.yml), a timer runs it every 10 s.
include:
  - patroni.config

{%- if enabled %}
etcd-leader-away-script:
  file.managed:
    - name: {{ script }}
    - source: salt://patroni/files/halite-etcd-leader-away.py
    - template: jinja
    - makedirs: True
    - mode: "0755"
    - context:
        etcd_url: {{ hl.host.etcd.local_url }}
        etcd_tls: {{ (hl.host.etcd.tls.client if hl.host.etcd.tls else {})|json }}
        patroni_url: {{ hl.host.patroni_api.local_url }}
        patroni_tls: {{ (hl.host.patroni_api.tls or {})|json }}

etcd-leader-away-units:
  file.managed:
    - names:
      - /etc/systemd/system/halite-etcd-leader-away.service:
        - contents: |
            # Managed by Salt (halite patroni.etcd_leader)
            [Unit]
            Description=halite: hand etcd leadership away from the PostgreSQL primary
            After=etcd.service patroni.service
            [Service]
            Type=oneshot
            ExecStart={{ script }}
      - /etc/systemd/system/halite-etcd-leader-away.timer:
        - contents: |
            # Managed by Salt (halite patroni.etcd_leader)
            [Unit]
            Description=halite: keep etcd leadership off the PostgreSQL primary (every 10 s)
            [Timer]
            OnBootSec=30s
            OnUnitActiveSec=10s
            AccuracySec=1s
            [Install]
            WantedBy=timers.target
    - mode: "0644"

etcd-leader-away-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: etcd-leader-away-units

etcd-leader-away-timer:
  service.running:
    - name: halite-etcd-leader-away.timer
    - enable: True
    - require:
      - file: etcd-leader-away-script
      - cmd: etcd-leader-away-systemd-reload
{%- else %}
etcd-leader-away-timer:
  service.dead:
    - name: halite-etcd-leader-away.timer
    - enable: False
    - onlyif: test -e /etc/systemd/system/halite-etcd-leader-away.timer

etcd-leader-away-files:
  file.absent:
    - names:
      - {{ script }}
      - /etc/systemd/system/halite-etcd-leader-away.service
      - /etc/systemd/system/halite-etcd-leader-away.timer
    - require:
      - service: etcd-leader-away-timer
{%- endif %}
