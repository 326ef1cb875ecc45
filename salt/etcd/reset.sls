{%- from "map.jinja" import hl with context %}
{%- set peers = hl.host.etcd.peers %}
# Take this host's etcd member out of the cluster so that it can join again as a
# new member (orch.etcd_member with replace: true): stop etcd, remove the member
# through a running peer, move the data directory aside (kept, never deleted).
etcd-stopped-for-replace:
  service.dead:
    - name: {{ hl.services.etcd }}

etcd-member-removed:
  etcd_member.absent:
    - name: {{ hl.host.name }}
    - peers: {{ peers|json }}
    - port: {{ hl.etcd.client_port }}
    - require:
      - service: etcd-stopped-for-replace

etcd-data-moved-aside:
  cmd.run:
    - name: mv {{ hl.etcd.data_dir }} {{ hl.etcd.data_dir }}.replaced-$(date +%Y%m%dT%H%M%S)
    - onlyif: test -d {{ hl.etcd.data_dir }}/member
    - require:
      - etcd_member: etcd-member-removed
