{%- from "map.jinja" import hl with context %}
{%- set w = hl.web %}
{%- set me = hl.topology.hosts[grains['id']] %}
{%- set address = me.addresses.get(w.listen_network) or hl.host.address %}
# nginx in front of gunicorn, on this host's address on the web network only.
# It owns the whole nginx.conf, which `nginx -t` checks before it is installed.
include:
  - base.packages

web-nginx-package:
  pkg.installed:
    - name: nginx
    - require:
      - sls: base.packages

web-nginx-config:
  file.managed:
    - name: /etc/nginx/nginx.conf
    - source: salt://web/files/nginx.conf.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: nginx -t -q -c
    - context:
        nginx_user: {{ 'www-data' if grains['os_family'] == 'Debian' else 'nginx' }}
        address: {{ address }}
        port: {{ w.http_port }}
        upstream: {{ w.bind }}
        static_dir: {{ w.home }}/app/halite_web/static/
    - require:
      - pkg: web-nginx-package

{%- if grains['os_family'] == 'RedHat' %}

web-selinux-nginx-proxy:
  selinux.boolean:
    - name: httpd_can_network_connect
    - value: True
    - persist: True
    - require_in:
      - service: web-nginx-running
{%- endif %}

# Restarted, not reloaded: a reload cannot trade the package's wildcard
# listener for the address-bound one.
web-nginx-running:
  service.running:
    - name: nginx
    - enable: True
    - watch:
      - file: web-nginx-config
