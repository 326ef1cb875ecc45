{%- from "map.jinja" import hl with context %}
{%- set m = hl.host.monitoring %}
{%- set p = hl.monitoring_paths %}
# Prometheus (targets from the topology, halite's alert rules, retention from pillar),
# Alertmanager with one receiver (monitoring.webhook_url, or halite's recorder), on the
# host with the role monitoring. Every configuration file is checked by the package's own
# tool (promtool, amtool) before it replaces the old one: a bad file changes nothing.
include:
  - tls

monitoring-server-pkgs:
  pkg.installed:
    - pkgs: {{ hl.pkgs.prometheus|json }}
    - install_recommends: False

{%- if hl.tls_on.etcd %}

# Prometheus's copy of this host's key: etcd asks every client for a certificate
halite-tls-key-prometheus:
  file.managed:
    - name: {{ hl.tls_paths['keys']['prometheus'] }}
    - contents: {{ hl.host.tls.key|json }}
    - user: prometheus
    - group: prometheus
    - mode: "0600"
    - show_changes: False
    - require:
      - file: halite-tls-dir
      - pkg: monitoring-server-pkgs
    - require_in:
      - file: monitoring-prometheus-config
{%- endif %}

# HAProxy's stats login (its /metrics is behind it)
monitoring-haproxy-stats-password:
  file.managed:
    - name: {{ p.haproxy_stats_password }}
    - contents: {{ hl.haproxy.stats_password|json }}
    - contents_newline: False
    - user: prometheus
    - group: prometheus
    - mode: "0600"
    - show_changes: False
    - require:
      - pkg: monitoring-server-pkgs

monitoring-prometheus-rules:
  file.managed:
    - name: {{ p.rules }}
    - source: salt://monitoring/files/alerts.yml.jinja
    - template: jinja
    - context:
        mon: {{ m.rules|json }}
    - mode: "0644"
    - check_cmd: /usr/bin/promtool check rules
    - require:
      - pkg: monitoring-server-pkgs

monitoring-prometheus-config:
  file.managed:
    - name: {{ p.prometheus_yml }}
    - source: salt://monitoring/files/prometheus.yml.jinja
    - template: jinja
    - context:
        mon: {{ m.rules|json }}
        rules_file: {{ p.rules }}
    - mode: "0644"
    - check_cmd: /usr/bin/promtool check config
    - require:
      - file: monitoring-prometheus-rules
      - file: monitoring-haproxy-stats-password

monitoring-prometheus-args:
  file.managed:
    - name: /etc/default/prometheus
    - contents: |
        # Managed by Salt (halite monitoring.server)
        ARGS="{{ m.prometheus_args }}"
    - mode: "0644"
    - require:
      - pkg: monitoring-server-pkgs

monitoring-prometheus-service:
  service.running:
    - name: prometheus
    - enable: True
    - watch:
      - file: monitoring-prometheus-rules
      - file: monitoring-prometheus-config
      - file: monitoring-prometheus-args
{%- if hl.tls_on.etcd %}
      - file: halite-tls-key-prometheus
{%- endif %}

monitoring-alertmanager-config:
  file.managed:
    - name: {{ p.alertmanager_yml }}
    - source: salt://monitoring/files/alertmanager.yml.jinja
    - template: jinja
    - context:
        am: {{ m.alertmanager|json }}
    - mode: "0644"
    - check_cmd: /usr/bin/amtool check-config
    - require:
      - pkg: monitoring-server-pkgs

monitoring-alertmanager-args:
  file.managed:
    - name: /etc/default/prometheus-alertmanager
    - contents: |
        # Managed by Salt (halite monitoring.server)
        ARGS="{{ m.alertmanager_args }}"
    - mode: "0644"
    - require:
      - pkg: monitoring-server-pkgs

monitoring-alertmanager-service:
  service.running:
    - name: prometheus-alertmanager
    - enable: True
    - watch:
      - file: monitoring-alertmanager-config
      - file: monitoring-alertmanager-args

{%- if m.alertmanager.recorder %}

monitoring-recorder-script:
  file.managed:
    - name: {{ p.recorder }}
    - source: salt://monitoring/files/alert-recorder.py
    - makedirs: True
    - mode: "0755"

monitoring-recorder-unit:
  file.managed:
    - name: /etc/systemd/system/halite-alert-recorder.service
    - contents: |
        # Managed by Salt (halite monitoring.server)
        [Unit]
        Description=halite: records Alertmanager's notifications in {{ p.recorder_dir }}/alerts.jsonl
        [Service]
        User=prometheus
        StateDirectory={{ p.recorder_dir|replace('/var/lib/', '') }}
        WorkingDirectory={{ p.recorder_dir }}
        ExecStart=/usr/bin/python3 {{ p.recorder }} {{ m.alertmanager.recorder_listen[0] }} {{ m.alertmanager.recorder_listen[1] }}
        Restart=on-failure
        [Install]
        WantedBy=multi-user.target
    - mode: "0644"

monitoring-recorder-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: monitoring-recorder-unit

monitoring-recorder-service:
  service.running:
    - name: halite-alert-recorder
    - enable: True
    - require:
      - module: monitoring-recorder-reload
    - watch:
      - file: monitoring-recorder-script
      - file: monitoring-recorder-unit
    - require_in:
      - service: monitoring-alertmanager-service
{%- endif %}
