{%- from "map.jinja" import hl with context %}
{%- from "web/target.jinja" import site with context %}
{%- set w = hl.web %}
{%- set venv = w.home ~ '/venv' %}
{%- set needs = 'legacy' if site.target == 'legacy' and grains['id'] in (hl.roles.get('legacy_db') or [])
           else ('haproxy' if site.target == 'cluster' and grains['id'] in hl.roles.haproxy else None) %}
# The schema of the chosen database (`python -m halite_web migrate`, which
# applies only what is missing), and demo data on the legacy server only, the
# starting point (the tool skips it when cars exist). Each first asks the
# database whether there is anything to do (unless), so a converged host
# reports nothing to do, also under test=True.
include:
  - web.install
{%- if needs %}
  - {{ needs }}
{%- endif %}

web-schema-migrate:
  cmd.run:
    - name: |
        out=$({{ venv }}/bin/python -m halite_web migrate 2>&1); rc=$?
        printf '%s\n' "$out"
        [ $rc -eq 0 ] || exit $rc
        case "$out" in
          *"schema up to date"*) echo "changed=no comment='{{ site.target }} database: schema up to date'";;
          *) echo "changed=yes comment='{{ site.target }} database: migrations applied'";;
        esac
    - stateful: True
    - unless: >-
        {{ venv }}/bin/python -c "import os, sys; from halite_web.migrate import applied_versions, discover;
        sys.exit(0 if {m.version for m in discover()} <= set(applied_versions(os.environ['HALITE_WEB_WRITE_DSN'])) else 1)"
    - cwd: {{ w.home }}/app
    - runas: {{ w.user }}
    - env:
        HALITE_WEB_WRITE_DSN: {{ site.write_dsn|json }}
    - require:
      - cmd: web-pip-install
{%- if needs %}
      - sls: {{ needs }}
{%- endif %}
{%- if site.target == 'legacy' %}

web-demo-data:
  cmd.run:
    - name: |
        out=$({{ venv }}/bin/python -m halite_web seed --cars {{ w.seed.cars }} --seed {{ w.seed.seed }} 2>&1); rc=$?
        printf '%s\n' "$out"
        [ $rc -eq 0 ] || exit $rc
        case "$out" in
          *"seed skipped"*) echo "changed=no comment='legacy database: demo data present, not seeding'";;
          *) echo "changed=yes comment='legacy database: {{ w.seed.cars }} demo cars generated'";;
        esac
    - stateful: True
    - unless: >-
        {{ venv }}/bin/python -c "import os, sys, psycopg;
        conn = psycopg.connect(os.environ['HALITE_WEB_WRITE_DSN'], connect_timeout=10);
        sys.exit(0 if conn.execute('SELECT EXISTS (SELECT 1 FROM cars)').fetchone()[0] else 1)"
    - cwd: {{ w.home }}/app
    - runas: {{ w.user }}
    - env:
        HALITE_WEB_WRITE_DSN: {{ site.write_dsn|json }}
    - require:
      - cmd: web-schema-migrate
{%- endif %}
