"""The salt-ssh roster for a topology: jump host direct, the rest through it."""
from __future__ import annotations

import os

from halite import config

KEY = os.environ.get("HALITE_SSH_KEY", "/var/lib/halite/lab/ssh/id_ed25519")
KNOWN_HOSTS = os.environ.get("HALITE_KNOWN_HOSTS", "/var/lib/halite/lab/ssh/known_hosts")


def roster(topo: dict | None = None, key: str = KEY, known_hosts: str = KNOWN_HOSTS) -> dict:
    topo = topo or config.load_topology()
    jump = config.hosts_with_role(topo, "jump")[0]
    jump_addr = topo["hosts"][jump]["addresses"].get("edge") or config.cluster_address(topo, jump)
    common = [f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes"]
    out = {}
    for host in topo["hosts"]:
        entry = {"user": "root", "priv": key, "ssh_options": list(common)}
        if host == jump:
            entry["host"] = jump_addr
        else:
            entry["host"] = config.cluster_address(topo, host)
            # salt joins and re-splits ssh options with shell rules: keep the quotes.
            entry["ssh_options"].append(
                f'"ProxyCommand=ssh -i {key} -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes '
                f'-o BatchMode=yes -o ConnectTimeout=10 -W %h:%p root@{jump_addr}"'
            )
        out[host] = entry
    return out
