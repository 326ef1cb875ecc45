{%- from "map.jinja" import hl with context %}
# Kernel settings for the host's roles (pillar sysctl, merged per host in
# halite.view.host_sysctl). In a container only the network namespace's own keys
# (net.*) can be set; the rest stay in the file for real hosts and are reported,
# not applied.
{%- set settings = hl.host.sysctl %}
{%- if settings %}
base-sysctl-file:
  file.managed:
    - name: {{ hl.paths.sysctl_conf }}
    - mode: "0644"
    - contents: |
        # Managed by Salt (halite base.sysctl)
{%- for key, value in settings|dictsort %}
        {{ key }} = {{ value }}
{%- endfor %}

{%- set skipped = [] %}
{%- for key, value in settings|dictsort %}
{%- if hl.in_container and not key.startswith('net.') %}
{%- do skipped.append(key) %}
{%- else %}
base-sysctl-{{ key }}:
  sysctl.present:
    - name: {{ key }}
    - value: {{ value }}
    - config: {{ hl.paths.sysctl_conf }}
    - require:
      - file: base-sysctl-file
{%- endif %}
{%- endfor %}
{%- if skipped %}

base-sysctl-container-note:
  test.succeed_without_changes:
    - name: "not applied in a container (host kernel keys): {{ skipped|join(', ') }}"
{%- endif %}
{%- endif %}
