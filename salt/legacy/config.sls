{%- from "map.jinja" import hl with context %}
{%- from "legacy/settings.jinja" import lg with context %}
{%- set confdir = hl.paths.legacy_conf_dir %}
# The cluster (pg_createcluster, once), its settings in conf.d and its pg_hba:
# scram-sha-256 only; the app from this host, the move's user from db hosts.
include:
  - legacy.install

legacy-cluster-created:
  cmd.run:
    - name: >-
        pg_createcluster --port {{ lg.port }} --encoding UTF8 --locale C.UTF-8 {{ hl.host.postgresql_version }} {{ lg.cluster }}
        -- --auth-local=peer --auth-host=scram-sha-256 --data-checksums
    - creates: {{ confdir }}/postgresql.conf
    - require:
      - pkg: legacy-packages

# Debian's postgresql.conf for 15 reads no conf.d: include it once.
legacy-config-include-dir:
  file.append:
    - name: {{ confdir }}/postgresql.conf
    - text: "include_dir = 'conf.d'  # halite: settings in conf.d/50-halite.conf"
    - require:
      - cmd: legacy-cluster-created

legacy-config-file:
  file.managed:
    - name: {{ confdir }}/conf.d/50-halite.conf
    - source: salt://legacy/files/halite.conf.jinja
    - template: jinja
    - user: postgres
    - group: postgres
    - mode: "0644"
    - makedirs: True
    - context:
        listen: {{ [hl.host.address, '127.0.0.1']|unique|list|json }}
        port: {{ lg.port }}
        parameters: {{ lg.parameters|json }}
    - require:
      - file: legacy-config-include-dir

legacy-hba-file:
  file.managed:
    - name: {{ confdir }}/pg_hba.conf
    - source: salt://legacy/files/pg_hba.conf.jinja
    - template: jinja
    - user: postgres
    - group: postgres
    - mode: "0640"
    - context:
        database: {{ hl.users.app.database }}
        app: {{ hl.users.app.username }}
        mover: {{ hl.users.legacy_move.username }}
        movers: {{ hl.host.legacy_hba_sources|json }}
    - require:
      - cmd: legacy-cluster-created
