{%- from "map.jinja" import hl with context %}
{%- set dsn = hl.host.dsn %}
{%- set mv = hl.move %}
# The move itself (orch.migrate), on the cluster's leader only: it subscribes
# the leader's PostgreSQL to the legacy server, waits for the copy, freezes
# the app's writes there, checks that both sides are identical and syncs the
# sequences (pg_move.move). On any failed check the legacy server is unfrozen
# and the state fails: the site stays where it is. A cluster whose tables hold
# rows (the orders of an earlier move) is refused unless move.overwrite_target.
web-move-database-to-cluster:
  module.run:
    - pg_move.move:
      - source_dsn: {{ dsn.move_source|json }}
      - target_dsn: {{ dsn.move_target|json }}
      - source_conninfo_for_target: {{ dsn.move_source|json }}
      - role: {{ hl.users.app.username }}
      - publication: {{ mv.publication }}
      - subscription: {{ mv.subscription }}
      - sync_timeout: {{ mv.sync_timeout }}
      - catchup_timeout: {{ mv.catchup_timeout }}
      - overwrite: {{ mv.overwrite_target|json }}
      - expendable: {{ mv.expendable_tables|json }}
      - runas: {{ hl.users.superuser.username }}
    - onlyif:
      - fun: patroni.is_leader
