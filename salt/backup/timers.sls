{%- from "map.jinja" import hl with context %}
{%- set br = hl.host.pgbackrest %}
# Scheduled backups (systemd timers, from pillar backup.schedule_*), taken from
# a standby when one is healthy (backup-standby in pgbackrest.conf).
include:
  - backup.repo

{%- for t in br.timers %}
backup-timer-{{ t.name }}-service:
  file.managed:
    - name: /etc/systemd/system/halite-backup-{{ t.name }}.service
    - contents: |
        # Managed by Salt (halite backup.timers)
        [Unit]
        Description=halite: {{ t.type }} backup of stanza {{ br.stanza }} (pgBackRest)
        After=network-online.target
        [Service]
        Type=oneshot
        User=postgres
        Group=postgres
        ExecStart=/usr/bin/pgbackrest --stanza={{ br.stanza }} --type={{ t.type }} backup
    - mode: "0644"

backup-timer-{{ t.name }}:
  file.managed:
    - name: /etc/systemd/system/halite-backup-{{ t.name }}.timer
    - contents: |
        # Managed by Salt (halite backup.timers)
        [Unit]
        Description=halite: {{ t.type }} backup of stanza {{ br.stanza }} on schedule
        [Timer]
        OnCalendar={{ t.schedule }}
        Persistent=true
        RandomizedDelaySec=60
        [Install]
        WantedBy=timers.target
    - mode: "0644"

backup-timer-{{ t.name }}-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: backup-timer-{{ t.name }}-service
      - file: backup-timer-{{ t.name }}

backup-timer-{{ t.name }}-active:
  service.running:
    - name: halite-backup-{{ t.name }}.timer
    - enable: True
    - require:
      - module: backup-timer-{{ t.name }}-reload
    - watch:
      - file: backup-timer-{{ t.name }}
{%- endfor %}
