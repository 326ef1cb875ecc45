{%- from "map.jinja" import hl with context %}
{%- set topo = hl.topology %}
{%- set members = [] %}
{%- for name, spec in topo.hosts.items() if 'db' in spec.get('roles', []) %}
{%- do members.append(name ~ '=http://' ~ hl.addresses[name] ~ ':' ~ hl.etcd.peer_port) %}
{%- endfor %}
# Members, peers and token all derive from the topology. A host that joins a
# running cluster sets halite:etcd:initial_cluster_state to "existing"
# (orch.etcd_add_member does that after `etcd_cluster.member_add`).
include:
  - etcd.install

etcd-data-dir:
  file.directory:
    - name: {{ hl.etcd.data_dir }}
    - user: etcd
    - group: etcd
    - mode: "0700"
    - makedirs: True
    - require:
      - sls: etcd.install

etcd-config-file:
  file.managed:
    - name: {{ hl.paths.etcd_conf }}
    - source: salt://etcd/files/etcd.env.jinja
    - template: jinja
    - mode: "0644"
    - context:
        name: {{ hl.host.name }}
        address: {{ hl.host.address }}
        etcd: {{ hl.etcd|json }}
        initial_cluster: {{ members|join(',') }}
        token: {{ hl.patroni.scope }}-{{ topo.name }}
    - require:
      - file: etcd-data-dir
