{%- from "map.jinja" import hl with context %}
# SSH hardening: keys only. Only the jump host forwards TCP (it is the bastion).
# Root logs in only when it is the user halite logs in as (topology.access.user);
# with a named user and sudo (a cloud image), root's login stays refused.
# sshd keeps the first value it reads, so the drop-in sorts first (00-): a
# 50-cloud-init.conf that allows passwords cannot override it.
include:
  - base.packages

base-sshd-old-dropin-absent:
  file.absent:
    - name: {{ hl.paths.sshd_dropin_old }}

base-sshd-config:
  file.managed:
    - name: {{ hl.paths.sshd_dropin }}
    - mode: "0644"
    - makedirs: True
    - contents: |
        # Managed by Salt (halite base.ssh)
        PermitRootLogin {{ 'prohibit-password' if hl.host.login_user == 'root' else 'no' }}
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitEmptyPasswords no
        PubkeyAuthentication yes
        X11Forwarding no
        MaxAuthTries 3
        LoginGraceTime 30
        AllowAgentForwarding no
        AllowTcpForwarding {{ 'yes' if 'jump' in hl.host.roles else 'no' }}
    - require:
      - sls: base.packages

base-sshd-config-valid:
  cmd.run:
    - name: sshd -t
    - onchanges:
      - file: base-sshd-config
      - file: base-sshd-old-dropin-absent

base-sshd-running:
  service.running:
    - name: {{ hl.services.sshd }}
    - enable: True
    - reload: True
    - watch:
      - cmd: base-sshd-config-valid
