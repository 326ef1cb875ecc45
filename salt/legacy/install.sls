{%- from "map.jinja" import hl with context %}
{#- db and legacy_db on one host is refused by the model (halite/model.py cross_checks) #}
include:
  - base.packages
{%- if grains['os_family'] == 'Debian' %}

# Clusters are created by name (legacy.config), never a default "main".
legacy-no-main-cluster:
  file.managed:
    - name: /etc/postgresql-common/createcluster.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (halite legacy.install): clusters are created by name.
        create_main_cluster = false
    - require_in:
      - pkg: legacy-packages

legacy-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.postgresql|json }}
    - require:
      - sls: base.packages
{%- else %}

legacy-packages:
  test.fail_without_changes:
    - name: "the legacy server is laid down with Debian's pg_createcluster; {{ grains['os_family'] }} hosts cannot hold the legacy_db role"
{%- endif %}
