"""The salt-ssh roster for a topology: jump host direct, the rest through it."""
from __future__ import annotations

import os

from halite import config

KEY = os.environ.get("HALITE_SSH_KEY", "/var/lib/halite/lab/ssh/id_ed25519")
KNOWN_HOSTS = os.environ.get("HALITE_KNOWN_HOSTS", "/var/lib/halite/lab/ssh/known_hosts")


def _minion_opts(data: dict | None) -> dict:
    """What halite's execution modules read with config.get, for direct salt-ssh
    function calls (which get no pillar on the target)."""
    if not data:
        return {}
    # no secret: salt-ssh leaves minion_opts in its thin directory on the host; the patroni
    # module reads the REST API's password from patroni.yml there instead
    restapi = {k: v for k, v in ((data.get("patroni") or {}).get("restapi") or {}).items() if k != "password"}
    from halite import view

    return {"halite": {"patroni": {"restapi": restapi},
                       "etcd": {"client_port": (data.get("etcd") or {}).get("client_port", 2379)},
                       # which links speak TLS and the files to do it with (as the pillar has them)
                       "tls_on": view.tls_on(data) if data.get("tls") else {},
                       "tls_paths": {k: v for k, v in view.TLS_PATHS.items() if k != "keys"}}}


def roster(topo: dict | None = None, key: str = KEY, known_hosts: str = KNOWN_HOSTS, data: dict | None = None) -> dict:
    if topo is None:
        try:
            data = config.load()
            topo = data["topology"]
        except config.ConfigError as exc:
            # a bad topology stops here; a bad setting is reported by the pillar,
            # on every host, before any state runs (so the hosts must be known)
            if any(key.startswith("topology") for key, _ in exc.problems):
                raise
            topo, data = config.raw()["topology"], None
    minion_opts = _minion_opts(data)
    jump = config.hosts_with_role(topo, "jump")[0]
    jump_addr = topo["hosts"][jump]["addresses"].get("edge") or config.cluster_address(topo, jump)
    common = [f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes"]
    out = {}
    for host in topo["hosts"]:
        entry = {"user": "root", "priv": key, "ssh_options": list(common)}
        if minion_opts and host in config.hosts_with_role(topo, "db"):
            entry["minion_opts"] = minion_opts
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
