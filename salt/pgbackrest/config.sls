{%- from "map.jinja" import hl with context %}
{%- set br = hl.host.pgbackrest %}
{%- set tls = hl.host.tls %}
# pgbackrest.conf and the certificates from halite's CA: the host's own key
# only (the CA's key never leaves the control machine).
include:
  - pgbackrest.install

pgbackrest-config-file:
  file.managed:
    - name: {{ br.paths.conf }}
    - source: salt://pgbackrest/files/pgbackrest.conf.jinja
    - template: jinja
    - user: postgres
    - group: postgres
    - mode: "0640"
    # the backup host's holds the repository's passphrase
    - show_changes: False
    - context:
        conf: {{ br.conf|json }}
        host: {{ hl.host.name }}
    - require:
      - sls: pgbackrest.install

pgbackrest-tls-dir:
  file.directory:
    - name: {{ br.paths.tls_dir }}
    - user: postgres
    - group: postgres
    - mode: "0750"
    - makedirs: True
    - require:
      - sls: pgbackrest.install

pgbackrest-tls-ca:
  file.managed:
    - name: {{ br.paths.tls_dir }}/ca.crt
    - contents: {{ tls.ca|json }}
    - user: postgres
    - group: postgres
    - mode: "0644"
    - require:
      - file: pgbackrest-tls-dir

pgbackrest-tls-cert:
  file.managed:
    - name: {{ br.paths.tls_dir }}/{{ hl.host.name }}.crt
    - contents: {{ tls.cert|json }}
    - user: postgres
    - group: postgres
    - mode: "0644"
    - require:
      - file: pgbackrest-tls-dir

pgbackrest-tls-key:
  file.managed:
    - name: {{ br.paths.tls_dir }}/{{ hl.host.name }}.key
    - contents: {{ tls.key|json }}
    - user: postgres
    - group: postgres
    - mode: "0600"
    - show_changes: False
    - require:
      - file: pgbackrest-tls-dir

{%- for name in ['spool', 'log'] %}
pgbackrest-dir-{{ name }}:
  file.directory:
    - name: {{ br.paths[name] }}
    - user: postgres
    - group: postgres
    - mode: "0750"
    - makedirs: True
    - require:
      - sls: pgbackrest.install
{%- endfor %}
