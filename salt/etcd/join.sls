{%- from "map.jinja" import hl with context %}
{%- set peers = [] %}
{%- for name in hl.roles.db if name != hl.host.name %}{% do peers.append(hl.addresses[name]) %}{% endfor %}
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
    - peer_url: http://{{ hl.host.address }}:{{ hl.etcd.peer_port }}
    - peers: {{ peers|json }}
    - data_dir: {{ hl.etcd.data_dir }}
    - port: {{ hl.etcd.client_port }}
    - require:
      - sls: etcd.install
    - require_in:
      - file: etcd-config-file
