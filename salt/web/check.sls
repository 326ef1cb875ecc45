{%- from "map.jinja" import hl with context %}
{%- from "web/target.jinja" import site with context %}
{%- set dsn = hl.host.dsn %}
{%- set w = hl.web %}
{%- set web_site = hl.host.site %}
{%- if site.target == 'cluster' %}
{%- set hosts = [] %}
{%- for name in hl.roles.db %}{% do hosts.append(hl.addresses[name]) %}{% endfor %}
{%- set port = hl.postgresql.port %}
{%- else %}
{%- set hosts = ['127.0.0.1'] %}
{%- set port = hl.legacy.port %}
{%- endif %}
# Gate: the site answers through nginx (over https, verified with halite's CA,
# unless tls.unsafe_plaintext names site), from the chosen database (its
# /api/status names the primary it wrote to), and its read path works.
# With move:report_downtime (orch.migrate) it also reports the writes'
# downtime: from the freeze on the legacy server to this first answer.
web-site-answers:
  cmd.run:
    - name: >-
        {{ w.home }}/venv/bin/python {{ w.home }}/bin/site-check serving
        --url {{ web_site.url }}{{ ' --ca ' ~ web_site.ca if web_site.tls else '' }} --target {{ site.target }}
        --expect-hosts {{ hosts|join(',') }} --expect-port {{ port }}
        --timeout {{ hl.move.check_timeout }}{{ ' --downtime' if hl.move.get('report_downtime') else '' }}
    - stateful: True
    - timeout: {{ hl.move.check_timeout + 30 }}
    - env:
        LEGACY_DSN: {{ dsn.legacy|json }}
