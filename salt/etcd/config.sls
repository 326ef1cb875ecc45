{%- from "map.jinja" import hl with context %}
{#- etcd reads ETCD_INITIAL_* only while its data directory holds no member.
    After that, keep the value the file has, so that later runs change nothing. #}
{%- set cluster_state = hl.etcd.get('initial_cluster_state', 'new') %}
{%- if salt['file.directory_exists'](hl.etcd.data_dir ~ '/member') and salt['file.file_exists'](hl.paths.etcd_conf) %}
{%-   set found = salt['file.read'](hl.paths.etcd_conf)|regex_search('ETCD_INITIAL_CLUSTER_STATE="(new|existing)"') %}
{%-   if found %}{% set cluster_state = found[0] %}{% endif %}
{%- endif %}
# Members, peers and token all derive from the topology. A host that joins a
# running cluster starts with initial cluster state "existing": orch.etcd_member
# passes halite:etcd:initial_cluster_state=existing to etcd.join, which adds the
# member through a running peer first.
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
        view: {{ hl.host.etcd|json }}
        initial_cluster_state: {{ cluster_state }}
    - require:
      - file: etcd-data-dir
