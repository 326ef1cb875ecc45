{%- from "map.jinja" import hl with context %}
# The postgres user's copy of this host's key: Patroni runs as postgres and shows it to
# etcd (a client certificate, tls_on.etcd) and serves its REST API with it (tls_on.patroni_api);
# the leader-away callback runs as postgres too. No diff is ever shown.
# The state ID is the one any other state laying down the same file must use (one file, one ID).
include:
  - patroni.install
  - tls
{%- if hl.tls_on.etcd or hl.tls_on.patroni_api %}

halite-tls-key-postgres:
  file.managed:
    - name: {{ hl.tls_paths['keys'].postgres }}
    - contents: {{ hl.host.tls.key|json }}
    - user: postgres
    - group: postgres
    - mode: "0600"
    - show_changes: False
    - require:
      - sls: patroni.install
      - file: halite-tls-dir
{%- endif %}
