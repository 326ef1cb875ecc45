{%- from "map.jinja" import hl with context %}
{%- set w = hl.web %}
{%- set venv = w.home ~ '/venv' %}
{%- set app_dir = w.home ~ '/app' %}
{%- set pip_src = ('--no-index --find-links ' ~ hl.packages.pip_find_links) if hl.packages.pip_find_links
                  else ('--index-url ' ~ hl.packages.pip_index_url if hl.packages.pip_index_url else '') %}
# The code (salt://web/app is a link to the repository's web/) in <home>/app,
# owned by root, and its requirements in a virtualenv from the wheel mirror.
include:
  - base.packages
  - web.user

web-python-venv-package:
  pkg.installed:
    - pkgs: {{ hl.pkgs.python_venv|json }}
    - require:
      - sls: base.packages

web-home-dir:
  file.directory:
    - name: {{ w.home }}
    - user: root
    - group: root
    - mode: "0755"

web-app-code:
  file.recurse:
    - name: {{ app_dir }}
    - source: salt://web/app
    - user: root
    - group: root
    - dir_mode: "0755"
    - file_mode: "0644"
    - clean: True
    - exclude_pat: 'E@(^|/)(__pycache__|\.pytest_cache)(/|$)|\.py[co]$'
    - require:
      - file: web-home-dir

web-virtualenv:
  cmd.run:
    - name: {{ hl.paths.python3 }} -m venv {{ venv }}
    - creates: {{ venv }}/bin/python
    - require:
      - pkg: web-python-venv-package
      - file: web-home-dir

# pip's dry run lists what it would install: nothing means the requirements are met.
web-pip-install:
  cmd.run:
    - name: {{ venv }}/bin/pip install --quiet {{ pip_src }} -r {{ app_dir }}/requirements.txt
    - unless: >-
        {{ venv }}/bin/pip install --dry-run --quiet --report - {{ pip_src }} -r {{ app_dir }}/requirements.txt |
        {{ venv }}/bin/python -c "import json, sys; sys.exit(1 if json.load(sys.stdin)['install'] else 0)"
    - require:
      - cmd: web-virtualenv
      - file: web-app-code

# Checks run by web.switch and web.check (Python of the virtualenv: psycopg).
web-site-check-tool:
  file.managed:
    - name: {{ w.home }}/bin/site-check
    - source: salt://web/files/site_check.py
    - makedirs: True
    - mode: "0755"
    - require:
      - file: web-home-dir
