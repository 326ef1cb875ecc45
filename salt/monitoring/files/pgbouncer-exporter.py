#!/usr/bin/python3
# Managed by Salt (halite monitoring.exporters)
"""Debian's prometheus-pgbouncer-exporter (1.7), started as its own command is, with one
change: it reads SHOW STATS's column ``total_requests``, which PgBouncer 1.8 replaced by
``total_query_count`` (Debian 12 ships PgBouncer 1.18). Without this every scrape fails
with a KeyError and Prometheus sees no PgBouncer metric at all. The metric keeps its name
(``pgbouncer_requests_total``)."""
from prometheus_pgbouncer_exporter import cli, collectors

_metrics = collectors.StatsCollector.metrics
if "total_requests" in _metrics:
    _metrics["total_query_count"] = _metrics.pop("total_requests")

if __name__ == "__main__":
    cli.main()
