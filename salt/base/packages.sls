{%- from "map.jinja" import hl with context %}
# Package sources come from pillar (halite:packages): the lab's mirror, or the
# distribution's / PGDG / an organisation's repositories on real hosts.
{%- if grains['os_family'] == 'Debian' %}
{#- the repositories' keys (packages.apt_keys, read on the control machine by
    halite.view.apt_keys), where the sources' [signed-by=...] names them #}
{%- for name, key in hl.apt_keys|dictsort %}
base-apt-key-{{ name }}:
  file.managed:
    - name: {{ key.path }}
    - contents: {{ key.text|json }}
    - mode: "0644"
    - makedirs: True
    - require_in:
      - file: base-apt-sources
{%- endfor %}
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
{%- for name in hl.apt_keys|sort %}
      - file: base-apt-key-{{ name }}
{%- endfor %}
{%- endif %}
{%- elif grains['os_family'] == 'RedHat' %}
{#- each repository names the key its packages are signed with (halite.model.YumRepo:
    dnf refuses a checked repository without one); dnf imports it on the first install #}
{%- for name, repo in hl.packages.yum_repos|dictsort %}
base-yum-repo-{{ name }}:
  pkgrepo.managed:
    - name: {{ name }}
    - humanname: {{ name }}
    - baseurl: {{ repo.baseurl|json }}
    - gpgcheck: {{ 1 if repo.gpgcheck else 0 }}
{%- if repo.gpgkey %}
    - gpgkey: {{ repo.gpgkey|json }}
{%- endif %}
    - require_in:
      - pkg: base-packages
{%- endfor %}
{#- module streams that hide PGDG's packages of the same name (halite.platforms
    REDHAT_RELEASES dnf_modules_off: RHEL 8's default postgresql stream). dnf keeps a
    module's state in /etc/dnf/modules.d/<name>.module (state=disabled once disabled). #}
{%- for module in hl.platform.dnf_modules_off %}
base-dnf-module-{{ module }}-disabled:
  cmd.run:
    - name: dnf -qy module disable {{ module }}
    - unless: grep -qx 'state=disabled' /etc/dnf/modules.d/{{ module }}.module
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
