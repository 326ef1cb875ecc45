{%- from "map.jinja" import hl with context %}
# etcd's own copy of this host's key (etcd runs as the etcd user and cannot read root's):
# it serves clients and peers with it (halite.view.etcd_view, tls_on.etcd). No diff is ever shown.
include:
  - etcd.install
  - tls
{%- if hl.tls_on.etcd %}

etcd-tls-key:
  file.managed:
    - name: {{ hl.tls_paths['keys'].etcd }}
    - contents: {{ hl.host.tls.key|json }}
    - user: etcd
    - group: etcd
    - mode: "0600"
    - show_changes: False
    - require:
      - sls: etcd.install
      - file: halite-tls-dir
{%- endif %}
