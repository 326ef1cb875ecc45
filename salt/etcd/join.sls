{%- from "map.jinja" import hl with context %}
{%- set peers = hl.host.etcd.peers %}
# Join a running etcd cluster: a running peer adds this host as a member, then
# etcd starts with initial cluster state "existing". Run by orch.etcd_member,
# which passes halite:etcd:initial_cluster_state=existing.
{%- if hl.etcd.get('initial_cluster_state') != 'existing' and not salt['file.directory_exists'](hl.etcd.data_dir ~ '/member') %}
{{ raise("etcd.join on " ~ hl.host.name ~ " needs pillar halite:etcd:initial_cluster_state=existing; run it through orch.etcd_member") }}
{%- endif %}
include:
  - etcd

etcd-member-registered:
  etcd_member.present:
    - name: {{ hl.host.name }}
    - peer_url: {{ hl.host.etcd.peer_url }}
    - peers: {{ peers|json }}
    - data_dir: {{ hl.etcd.data_dir }}
    - port: {{ hl.etcd.client_port }}
    - require:
      - sls: etcd.install
    - require_in:
      - file: etcd-config-file
