{%- from "map.jinja" import hl with context %}
{%- set venv = hl.paths.patroni_venv %}
{%- set pip_src = ('--no-index --find-links ' ~ hl.packages.pip_find_links) if hl.packages.pip_find_links
                  else ('--index-url ' ~ hl.packages.pip_index_url if hl.packages.pip_index_url else '') %}
include:
  - postgresql

patroni-python-venv-package:
  pkg.installed:
    - pkgs: {{ hl.pkgs.python_venv|json }}

patroni-virtualenv:
  cmd.run:
    - name: {{ hl.paths.python3 }} -m venv {{ venv }}
    - creates: {{ venv }}/bin/python
    - require:
      - pkg: patroni-python-venv-package

patroni-pip-install:
  cmd.run:
    - name: {{ venv }}/bin/pip install --quiet {{ pip_src }} 'patroni[etcd3]=={{ hl.patroni.version }}' 'psycopg[binary]'
    - unless: {{ venv }}/bin/python -c "import importlib.metadata as m, fnmatch, sys; sys.exit(not fnmatch.fnmatch(m.version('patroni'), '{{ hl.patroni.version }}'))"
    - require:
      - cmd: patroni-virtualenv
      - sls: postgresql.install
