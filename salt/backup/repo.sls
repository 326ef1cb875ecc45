{%- from "map.jinja" import hl with context %}
{%- set br = hl.host.pgbackrest %}
include:
  - pgbackrest

backup-repo-dir:
  file.directory:
    - name: {{ hl.backup.repo_path }}
    - user: postgres
    - group: postgres
    - mode: "0750"
    - makedirs: True
    - require:
      - sls: pgbackrest.install

# The restore drill's file: the repository alone, the scratch folder as pg1-path.
backup-drill-config-file:
  file.managed:
    - name: {{ br.paths.drill_conf }}
    - source: salt://pgbackrest/files/pgbackrest.conf.jinja
    - template: jinja
    - makedirs: True
    - user: postgres
    - group: postgres
    - mode: "0640"
    - show_changes: False
    - context:
        conf: {{ br.drill_conf|json }}
        host: {{ hl.host.name }}
    - require:
      - sls: pgbackrest.install

backup-drill-dir:
  file.directory:
    - name: {{ br.paths.drill_dir }}
    - user: postgres
    - group: postgres
    - mode: "0700"
    - require:
      - sls: pgbackrest.install

# The restore drill reads the cluster's restore points (halite.restore_points) with the
# backup host's read-only login: a libpq service, its password in postgres's .pgpass.
backup-restore-points-service:
  file.managed:
    - name: {{ hl.paths.pg_home }}/.pg_service.conf
    - contents: {{ hl.host.restore_points_service|join('\n')|json }}
    - user: postgres
    - group: postgres
    - mode: "0600"
    - require:
      - sls: pgbackrest.install

backup-restore-points-pgpass:
  file.managed:
    - name: {{ hl.paths.pg_home }}/.pgpass
    - contents: {{ hl.host.restore_points_pgpass|json }}
    - user: postgres
    - group: postgres
    - mode: "0600"
    - show_changes: False
    - require:
      - sls: pgbackrest.install
