# RedHat family: firewalld runs by default and its zone drops what halite opens
# (etcd, Patroni's API, the poolers, HAProxy). halite's nftables ruleset
# (base.nftables, derived from the topology) is the firewall: firewalld is
# stopped and masked before nftables.service loads that ruleset, so that no
# second firewall adds its own tables or flushes halite's on a reload.
include:
  - base.nftables

base-firewalld-dead:
  service.dead:
    - name: firewalld
    - enable: False
    - require_in:
      - service: base-nftables-running

base-firewalld-masked:
  service.masked:
    - name: firewalld
    - require:
      - service: base-firewalld-dead
    - require_in:
      - service: base-nftables-running
