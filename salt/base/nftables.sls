{%- from "map.jinja" import hl with context %}
# Default-drop firewall derived from the topology (halite:host:firewall).
# The rendered file is checked with `nft -c` before it replaces the live one,
# so a bad rule never reaches the kernel and never locks a host out.
include:
  - base.packages

# Before the new ruleset replaces the live one: the SSH session this run came in
# through must still be allowed by it (a control machine behind NAT whose address
# is not the topology's control_address would otherwise shut itself out of the
# jump host). Same rules as the template prints; fails with no change if not.
base-nftables-ssh-source-allowed:
  halite_net.ssh_source_allowed:
    - host: {{ hl.host.name }}
    - roles: {{ hl.host.roles|json }}
    - addresses: {{ hl.topology.hosts[hl.host.name].addresses|json }}
    - rules: {{ hl.host.firewall|json }}

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
      - halite_net: base-nftables-ssh-source-allowed

base-nftables-running:
  service.running:
    - name: nftables
    - enable: True
    - reload: True
    - watch:
      - file: base-nftables-config
