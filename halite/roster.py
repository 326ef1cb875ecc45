"""The salt-ssh roster for a topology: jump host direct, the rest through it.

Who logs in where, with which key, checking host keys against which file, is
said once, by the topology (``topology.access``, a host's ``user``), and read
only here (:func:`access`): by the roster salt-ssh and salt-run use (the
repository's ``roster`` file), by ``halite hosts trust`` and by the lab's own
ssh. Salt's master configuration names no known_hosts file (it would come
before the roster's on ssh's command line, and ssh keeps the first).
"""
from __future__ import annotations

import os
from pathlib import Path

from halite import config, view

#: Where the lab keeps its key and host keys (:mod:`halite.lab`; HALITE_LAB_ROOT moves them).
LAB_SSH_DIR = Path(os.environ.get("HALITE_LAB_ROOT", "/var/lib/halite")) / "lab" / "ssh"
#: The preflight script salt-ssh runs on a host before it sends Salt there (a supported Python).
PREFLIGHT = config.REPO / "etc" / "salt" / "preflight.sh"
#: Where the preflight script links the Python it chose; salt-ssh looks there first (``set_path``).
PREFLIGHT_BIN = "/usr/local/lib/halite/bin"


def access(topo: dict) -> dict:
    """How the control machine logs in, for every run: ``{"key", "known_hosts", "users"}``.

    :param topo: a checked topology (:func:`halite.config.load_topology`).
    :returns: the private key and known_hosts file (the topology's; else, on the lab, the lab's
        key and the file ``halite hosts trust`` fills when the lab comes up, ``trusted_hosts``
        beside the lab's own record of the keys it made; elsewhere ``~/.ssh/id_ed25519`` and
        ``.halite/<name>/known_hosts``) and each host's login user (its own ``user``, else
        ``access.user``).

    Example::

        >>> access(config.load_topology())["users"]["db-01"]   # doctest: +SKIP
        'root'
    """
    acc = topo.get("access") or {}
    lab = topo["name"] == "lab"
    key = acc.get("key") or str(LAB_SSH_DIR / "id_ed25519" if lab else Path("~/.ssh/id_ed25519").expanduser())
    known = acc.get("known_hosts") or str(LAB_SSH_DIR / "trusted_hosts" if lab
                                         else config.REPO / ".halite" / topo["name"] / "known_hosts")
    users = {h: view.login_user(topo, h) for h in topo["hosts"]}
    return {"key": key, "known_hosts": known, "users": users}


def _minion_opts(data: dict | None) -> dict:
    """What halite's execution modules read with config.get, for direct salt-ssh
    function calls (which get no pillar on the target)."""
    if not data:
        return {}
    # no secret: salt-ssh leaves minion_opts in its thin directory on the host; the patroni
    # module reads the REST API's password from patroni.yml there instead
    restapi = {k: v for k, v in ((data.get("patroni") or {}).get("restapi") or {}).items() if k != "password"}

    return {"halite": {"patroni": {"restapi": restapi},
                       "etcd": {"client_port": (data.get("etcd") or {}).get("client_port", 2379)},
                       # which links speak TLS and the files to do it with (as the pillar has them)
                       "tls_on": view.tls_on(data) if data.get("tls") else {},
                       "tls_paths": {k: v for k, v in view.TLS_PATHS.items() if k != "keys"}}}


def roster(topo: dict | None = None, data: dict | None = None) -> dict:
    """salt-ssh's roster: every host of the topology, with :func:`access`'s user, key and known_hosts.

    A login user other than root runs Salt through passwordless sudo. A host whose distribution's
    Python may be too old for Salt (the RedHat family) first runs :data:`PREFLIGHT` (salt-ssh runs
    it whenever Salt's thin directory is missing there: on first contact and after each
    orchestration, which wipes it), and salt-ssh looks for Python in :data:`PREFLIGHT_BIN` first.
    """
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
    acc = access(topo)
    key, known_hosts = acc["key"], acc["known_hosts"]
    jump, jump_addr = view.jump_address(topo)
    common = [f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes"]
    out = {}
    for host in topo["hosts"]:
        user = acc["users"][host]
        entry = {"user": user, "priv": key, "ssh_options": list(common)}
        if topo["hosts"][host].get("os_family", "Debian") != "Debian":
            # Debian 12 and 13 ship Python 3.11 and 3.13; AlmaLinux/RHEL 8 and 9 3.6 and 3.9,
            # too old for Salt 3008's thin: the preflight installs python3.11 there
            entry.update(ssh_pre_flight=str(PREFLIGHT), set_path=f"{PREFLIGHT_BIN}:$PATH")
        if user != "root":
            entry["sudo"] = True
        if minion_opts and host in config.hosts_with_role(topo, "db"):
            entry["minion_opts"] = minion_opts
        if host == jump:
            entry["host"] = jump_addr
        else:
            entry["host"] = config.cluster_address(topo, host)
            # salt joins and re-splits ssh options with shell rules: keep the quotes.
            entry["ssh_options"].append(
                f'"ProxyCommand=ssh -i {key} -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes '
                f'-o BatchMode=yes -o ConnectTimeout=10 -W %h:%p {acc["users"][jump]}@{jump_addr}"'
            )
        out[host] = entry
    return out
