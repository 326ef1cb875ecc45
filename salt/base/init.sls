# Base layer for every host: packages, time, firewall, SSH, kernel, names, SELinux.
include:
  - base.packages
  - base.chrony
  - base.nftables
  - base.ssh
  - base.sysctl
  - base.hosts
{%- if grains.get('os_family') == 'RedHat' %}
  - base.selinux
{%- endif %}
