{#- orch.site: the car market's starting point, after orch.deploy: the legacy
    server, then the site on the app hosts (on whichever database each host
    last used: the legacy server at first), behind its gate.
    salt-run state.orchestrate orch.site #}
{%- set roles = salt['pillar.get']('halite:roles') %}

site-legacy:
  salt.state:
    - tgt: {{ (roles.get('legacy_db') or [])|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: legacy

site-web:
  salt.state:
    - tgt: {{ roles.app|join(',') }}
    - tgt_type: list
    - ssh: True
    - sls: [web, web.check]
    - require:
      - salt: site-legacy
