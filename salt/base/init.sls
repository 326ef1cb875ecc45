# Base layer for every host: packages, time, firewall, SSH, kernel, names,
# automatic upgrades (off on db hosts); on the RedHat family also firewalld
# off (halite's nftables ruleset is the firewall) and SELinux.
include:
  - base.packages
  - base.chrony
  - base.nftables
  - base.ssh
  - base.sysctl
  - base.hosts
  - base.upgrades
{%- if grains.get('os_family') == 'RedHat' %}
  - base.firewalld
  - base.selinux
{%- endif %}
