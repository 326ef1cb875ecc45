{%- from "map.jinja" import hl with context %}
{%- set w = hl.web %}
# gunicorn under systemd. Changed settings, code or requirements are taken up
# by a reload (SIGHUP: new workers start, old ones finish their requests), so
# the site never stops; a changed unit file restarts it.
include:
  - web.install
  - web.config

web-unit-file:
  file.managed:
    - name: /etc/systemd/system/carsale.service
    - source: salt://web/files/carsale.service.jinja
    - template: jinja
    - mode: "0644"
    - context:
        user: {{ w.user }}
        home: {{ w.home }}
        config_dir: {{ w.config_dir }}

web-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: web-unit-file

web-service-running:
  service.running:
    - name: carsale
    - enable: True
    - reload: True
    - require:
      - cmd: web-systemd-reload
      - cmd: web-pip-install
      - file: web-site-env
      - file: web-gunicorn-config
    - watch:
      - file: web-site-env
      - file: web-gunicorn-config
      - file: web-app-code
      - cmd: web-pip-install

web-service-restart-on-unit-change:
  cmd.run:
    - name: systemctl try-restart carsale
    - onchanges:
      - file: web-unit-file
    - require:
      - service: web-service-running
