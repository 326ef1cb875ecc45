{%- from "map.jinja" import hl with context %}
{%- set p = hl.tls_paths %}
{%- set tls = hl.host.tls %}
# halite's CA certificate, and this host's own certificate and key (halite.pki on the
# control machine; the CA's key never leaves it). Services running as their own user
# copy the key for themselves (e.g. postgresql.tls, etcd.tls). No diff is ever shown.
halite-tls-dir:
  file.directory:
    - name: {{ p.dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

halite-tls-ca:
  file.managed:
    - name: {{ p.ca }}
    - contents: {{ tls.ca|json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: halite-tls-dir

halite-tls-cert:
  file.managed:
    - name: {{ p.cert }}
    - contents: {{ tls.cert|json }}
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - file: halite-tls-dir

halite-tls-key:
  file.managed:
    - name: {{ p.key }}
    - contents: {{ tls.key|json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - require:
      - file: halite-tls-dir

# a certificate about to end fails the apply (renew: orch.rotate_certs)
halite-tls-cert-fresh:
  cert_health.fresh:
    - name: {{ p.cert }}
    - min_days: {{ hl.tls.renew_before_days }}
    - require:
      - file: halite-tls-cert
