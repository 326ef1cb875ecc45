{%- from "map.jinja" import hl with context %}
# Database hosts are upgraded by the operator, one member at a time behind the
# health gates, never behind the operator's back: an unattended upgrade that
# restarts PostgreSQL, Patroni or etcd on the primary is an unplanned failover.
# Other hosts keep the distribution's automatic updates.
{%- if 'db' in hl.host.roles %}
{%- if grains['os_family'] == 'Debian' %}
base-unattended-upgrades-off:
  file.managed:
    - name: /etc/apt/apt.conf.d/99halite-no-unattended-upgrades
    - mode: "0644"
    - contents: |
        // Managed by Salt (halite base.upgrades): db hosts are upgraded by
        // orchestration, one member at a time.
        APT::Periodic::Unattended-Upgrade "0";
        APT::Periodic::Update-Package-Lists "0";

# needrestart (run by apt) would restart services after a library upgrade:
# list them instead.
base-needrestart-list-only:
  file.managed:
    - name: /etc/needrestart/conf.d/99-halite.conf
    - mode: "0644"
    - makedirs: True
    - contents: |
        # Managed by Salt (halite base.upgrades): never restart services on a db host
        $nrconf{restart} = 'l';
{%- else %}
base-dnf-automatic-off:
  service.masked:
    - names:
      - dnf-automatic.timer
      - dnf-automatic-install.timer
{%- endif %}
{%- endif %}
