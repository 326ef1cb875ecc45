{%- from "map.jinja" import hl with context %}
# Time sync. On real hosts chrony runs with the pillar's servers; in a container
# it cannot set the clock (no CAP_SYS_TIME), the host's clock is the container's,
# so chrony is configured and enabled but left to its unit's condition.
include:
  - base.packages

base-chrony-config:
  file.managed:
    - name: {{ hl.paths.chrony_conf }}
    - source: salt://base/files/chrony.conf.jinja
    - template: jinja
    - context:
        servers: {{ hl.time.servers|json }}
    - require:
      - sls: base.packages

{%- if hl.in_container %}
base-chrony-enabled:
  service.enabled:
    - name: {{ hl.services.chrony }}
    - require:
      - file: base-chrony-config

base-chrony-container-note:
  test.succeed_without_changes:
    - name: "chrony configured, not started: {{ grains['id'] }} is a container ({{ grains.get('virtual') }}) without CAP_SYS_TIME; its clock is the host's"
{%- else %}
base-chrony-running:
  service.running:
    - name: {{ hl.services.chrony }}
    - enable: True
    - watch:
      - file: base-chrony-config
{%- endif %}
