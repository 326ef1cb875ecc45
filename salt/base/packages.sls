{%- from "map.jinja" import hl with context %}
# Package sources come from pillar (halite:packages): the lab's mirror, or the
# distribution's / PGDG / an organisation's repositories on real hosts.
{%- if grains['os_family'] == 'Debian' %}
{%- if hl.packages.apt_sources %}
base-apt-sources:
  file.managed:
    - name: /etc/apt/sources.list.d/halite.list
    - contents: {{ (["# managed by Salt (halite:packages:apt_sources)"] + hl.packages.apt_sources)|json }}
    - mode: "0644"

base-apt-update:
  cmd.run:
    - name: apt-get update -qq
    - onchanges:
      - file: base-apt-sources
{%- endif %}
{%- elif grains['os_family'] == 'RedHat' %}
{%- for name, url in hl.packages.get('yum_repos', {}).items() %}
base-yum-repo-{{ name }}:
  pkgrepo.managed:
    - name: {{ name }}
    - humanname: {{ name }}
    - baseurl: {{ url }}
    - gpgcheck: 1
    - require_in:
      - pkg: base-packages
{%- endfor %}
{%- endif %}

base-packages:
  pkg.installed:
    - pkgs: {{ hl.pkgs.base|json }}
{%- if grains['os_family'] == 'Debian' and hl.packages.apt_sources %}
    - require:
      - cmd: base-apt-update
{%- endif %}
