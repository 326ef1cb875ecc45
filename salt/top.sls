# Every host gets the base layer; the rest follows the host's roles
# (halite:host:states, derived from the topology by halite.config).
base:
  '*':
    - base
{%- for state in salt['pillar.get']('halite:host:states', []) %}
    - {{ state }}
{%- endfor %}
