# The car market (halite-web): gunicorn behind nginx, on the database that
# web.database_target chooses (see web/target.jinja). The starting point is
# the legacy server; orch.migrate moves the data and switches to the cluster.
include:
  - web.user
  - web.install
  - web.config
  - web.service
  - web.nginx
  - web.schema
