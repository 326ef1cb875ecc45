{%- from "map.jinja" import hl with context %}
# SSH hardening: keys only. Only the jump host forwards TCP (it is the bastion).
include:
  - base.packages

base-sshd-config:
  file.managed:
    - name: {{ hl.paths.sshd_dropin }}
    - mode: "0644"
    - makedirs: True
    - contents: |
        # Managed by Salt (halite base.ssh)
        PermitRootLogin prohibit-password
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

base-sshd-running:
  service.running:
    - name: {{ hl.services.sshd }}
    - enable: True
    - reload: True
    - watch:
      - cmd: base-sshd-config-valid
