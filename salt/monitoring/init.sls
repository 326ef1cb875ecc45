# Monitoring on the monitoring host (Prometheus, Alertmanager); the exporters are
# monitoring.exporters, applied to every host (halite:host:states).
include:
  - monitoring.server
  - monitoring.dashboard
