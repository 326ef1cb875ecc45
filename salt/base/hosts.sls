{%- from "map.jinja" import hl with context %}
# /etc/hosts knows every host of the topology by its cluster address.
{%- for name, address in hl.addresses|dictsort %}
base-hosts-{{ name }}:
  host.only:
    - name: {{ address }}
    - hostnames:
      - {{ name }}
      - {{ name }}.{{ hl.topology.domain }}
{%- endfor %}
