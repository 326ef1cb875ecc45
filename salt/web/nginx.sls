{%- from "map.jinja" import hl with context %}
{%- set w = hl.web %}
{%- set site = hl.host.site %}
# nginx in front of gunicorn, on this host's address on the web network only
# (halite.view.site_view): HTTPS with the host's certificate, plain HTTP only
# redirecting, unless tls.unsafe_plaintext names site. It owns the whole
# nginx.conf, which `nginx -t` checks before it is installed.
include:
  - base.packages
{%- if site.tls %}
  - tls
{%- endif %}

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
        site: {{ site|json }}
        upstream: {{ w.bind }}
        static_dir: {{ w.home }}/app/halite_web/static/
    - require:
      - pkg: web-nginx-package
{%- if site.tls %}
      # `nginx -t` reads the certificate and key
      - file: halite-tls-cert
      - file: halite-tls-key
{%- endif %}

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
{%- if site.tls %}
      # a renewed certificate (orch.rotate_certs) is served at once
      - file: halite-tls-cert
      - file: halite-tls-key
{%- endif %}
