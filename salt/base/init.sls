# Base layer for every host: packages, time, firewall, SSH, kernel, names,
# automatic upgrades (off on db hosts), SELinux.
include:
  - base.packages
  - base.chrony
  - base.nftables
  - base.ssh
  - base.sysctl
  - base.hosts
  - base.upgrades
{%- if grains.get('os_family') == 'RedHat' %}
  - base.selinux
{%- endif %}
