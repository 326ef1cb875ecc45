{%- from "map.jinja" import hl with context %}
include:
  - haproxy.config

# HAProxy raises its own open-file limit to what its maxconn needs, but only where it may
# (a container's root may not): systemd gives it the limit instead (halite.view.haproxy_backends,
# nofile). Without it a reload that raises maxconn fails ("Cannot raise FD limit") while
# systemd reports success and the old configuration keeps running. A new limit needs a
# restart; configuration changes need only a reload. On the RedHat family the drop-in
# also has systemd make /run/haproxy, the admin socket's folder (halite.platforms unit_lines).
haproxy-limits-dropin:
  file.managed:
    - name: /etc/systemd/system/haproxy.service.d/halite.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (halite haproxy.service)
        [Service]
        LimitNOFILE={{ hl.host.haproxy_backends.nofile }}
{%- for line in hl.unit_lines.haproxy %}
        {{ line }}
{%- endfor %}
    - mode: "0644"

haproxy-limits-restart:
  cmd.run:
    - name: systemctl daemon-reload && { systemctl reset-failed haproxy || true; } && systemctl restart haproxy
    - onchanges:
      - file: haproxy-limits-dropin
    - require:
      - sls: haproxy.config

haproxy-service-running:
  service.running:
    - name: haproxy
    - enable: True
    - reload: True
    - require:
      - cmd: haproxy-limits-restart
    - watch:
      - sls: haproxy.config
