{%- from "map.jinja" import hl with context %}
# The gate: Prometheus scrapes every exporter of the topology (one job per exporter).
monitoring-targets-up:
  prometheus_health.targets_up:
    - url: {{ hl.host.monitoring.prometheus_url }}
    - jobs: {{ hl.host.monitoring.rules.jobs|map(attribute='name')|list|json }}
    - timeout: 180
