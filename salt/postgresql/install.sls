{%- from "map.jinja" import hl with context %}
# The distribution's own cluster and unit are kept out of the way: Patroni's
# unit starts PostgreSQL.
include:
  - base.packages

{%- if grains['os_family'] == 'Debian' %}
postgresql-no-default-cluster:
  file.managed:
    - name: /etc/postgresql-common/createcluster.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (halite): Patroni creates and runs the cluster.
        create_main_cluster = false
    - require_in:
      - pkg: postgresql-packages
{%- endif %}

postgresql-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.postgresql|json }}
    - require:
      - sls: base.packages

postgresql-distro-service-disabled:
  service.dead:
    - name: {{ hl.services.postgresql_distro }}
    - enable: False
    - require:
      - pkg: postgresql-packages
