{%- from "map.jinja" import hl with context %}
# Default-drop firewall derived from the topology (halite:host:firewall).
# The rendered file is checked with `nft -c` before it replaces the live one,
# so a bad rule never reaches the kernel and never locks a host out.
include:
  - base.packages

base-nftables-config:
  file.managed:
    - name: {{ hl.paths.nftables_conf }}
    - source: salt://base/files/nftables.conf.jinja
    - template: jinja
    - mode: "0700"
    - check_cmd: nft -c -f
    - context:
        host: {{ hl.host.name }}
        rules: {{ hl.host.firewall|json }}
    - require:
      - sls: base.packages

base-nftables-running:
  service.running:
    - name: nftables
    - enable: True
    - reload: True
    - watch:
      - file: base-nftables-config
