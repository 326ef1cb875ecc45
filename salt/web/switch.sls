{%- from "map.jinja" import hl with context %}
{%- from "web/target.jinja" import site with context %}
{%- set dsn = hl.host.dsn %}
{%- set w = hl.web %}
# The switch alone (orch.migrate, with pillar web:database_target=cluster):
# rewrite site.env and the target file, reload gunicorn. To the cluster only
# when the legacy server records a finished move (pg_move.move marks the
# app's role with halite.moved_at), unless the host is on the cluster already.
include:
  - web.config
{%- if site.target == 'cluster' %}

web-switch-guard-move-finished:
  cmd.run:
    - name: {{ w.home }}/venv/bin/python {{ w.home }}/bin/site-check moved
    - stateful: True
    - env:
        LEGACY_DSN: {{ dsn.legacy|json }}
    - unless: grep -qx cluster {{ w.target_file }}
    - require_in:
      - file: web-site-env
      - file: web-target-file
{%- endif %}

web-switch-reload:
  cmd.run:
    - name: systemctl reload carsale
    - onchanges:
      - file: web-site-env
