{%- from "map.jinja" import hl with context %}
{%- set d = hl.host.monitoring.dashboard %}
# The dashboard page (salt/monitoring/files/dashboard: static files, uPlot from npm),
# served by Debian's nginx on the monitoring host; nginx passes /api/v1/ to Prometheus,
# GET only. The configuration is checked by `nginx -t` before it replaces the old one.
monitoring-dashboard-nginx-pkg:
  pkg.installed:
    - pkgs: [nginx]
    - install_recommends: False

monitoring-dashboard-files:
  file.recurse:
    - name: {{ d.root }}
    - source: salt://monitoring/files/dashboard
    - clean: True
    - dir_mode: "0755"
    - file_mode: "0644"
    - include_empty: True

monitoring-dashboard-nginx-conf:
  file.managed:
    - name: /etc/nginx/nginx.conf
    - source: salt://monitoring/files/dashboard-nginx.conf.jinja
    - template: jinja
    - context:
        dash: {{ d|json }}
    - mode: "0644"
    - check_cmd: nginx -t -q -c
    - require:
      - pkg: monitoring-dashboard-nginx-pkg

monitoring-dashboard-nginx-default-site:
  file.absent:
    - name: /etc/nginx/sites-enabled/default

monitoring-dashboard-nginx:
  service.running:
    - name: nginx
    - enable: True
    - reload: True
    - watch:
      - file: monitoring-dashboard-nginx-conf
      - file: monitoring-dashboard-nginx-default-site
    - require:
      - file: monitoring-dashboard-files
