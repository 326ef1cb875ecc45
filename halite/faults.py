"""Fault primitives for the lab, acting from the control machine.

They reach into a host's namespaces with ``nsenter`` (or stop its container),
not through Salt or SSH, so they work even when the host is cut off. Every
fault has its undo: ``poweron`` for ``poweroff``, ``heal`` for ``partition``,
``etcd-start`` for ``etcd-stop``, ``thaw`` for ``freeze`` (``--what pgbouncer``: a hung
pooler). After ``postgres-kill`` Patroni starts PostgreSQL again; after ``patroni-kill`` and
``pgbouncer-kill`` (and ``haproxy-kill``) systemd restarts what was killed.

CLI Example::

    halite lab fault postgres-kill db-01
    halite lab fault partition db-01 --peers db-02,db-03
    halite lab fault heal db-01
"""
from __future__ import annotations

import subprocess

from halite import config, lab, view

FAULT_TABLE = "halite_fault"


def _nsenter(host: str, cmd: list[str], namespaces: str = "-a", check: bool = True) -> subprocess.CompletedProcess:
    pid = lab.leader_pid(host)
    res = subprocess.run(["nsenter", "-t", str(pid), namespaces, *cmd], capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise RuntimeError(f"{host}: {' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res


def _pg_datadir(host: str) -> str:
    """The host's PostgreSQL data directory, from its view (one place knows the path)."""
    return view.pillar_for(host, config.load())["halite"]["paths"]["pg_datadir"]


def postmaster_pid(host: str) -> int:
    res = _nsenter(host, ["head", "-1", f"{_pg_datadir(host)}/postmaster.pid"])
    return int(res.stdout.strip())


def unit_pid(host: str, unit: str) -> int:
    """The main PID of systemd unit ``unit`` on ``host`` (patroni, pgbouncer)."""
    res = _nsenter(host, ["systemctl", "show", "-p", "MainPID", "--value", unit])
    pid = int(res.stdout.strip() or 0)
    if not pid:
        raise RuntimeError(f"{host}: {unit} is not running")
    return pid


def _kill_unit(host: str, unit: str) -> str:
    """SIGKILL to ``unit``'s main process; systemd restarts it."""
    pid = unit_pid(host, unit)
    _nsenter(host, ["kill", "-KILL", str(pid)])
    return f"{host}: {unit} {pid} killed (SIGKILL); systemd restarts it"


def patroni_pid(host: str) -> int:
    return unit_pid(host, "patroni")


def postgres_kill(host: str) -> str:
    pid = postmaster_pid(host)
    _nsenter(host, ["kill", "-KILL", str(pid)])
    return f"{host}: postmaster {pid} killed (SIGKILL)"


def patroni_kill(host: str) -> str:
    return _kill_unit(host, "patroni")


def poweroff(*hosts: str) -> str:
    """A power cut: SIGKILL to each container's init ends every process in it at once.

    Several hosts lose power together: every init is killed before waiting for any.
    """
    import os
    import signal
    import time

    state = lab.load_state()
    killed = []
    for host in hosts:
        init = lab.leader_pid(host, state)
        os.kill(init, signal.SIGKILL)
        killed.append(f"{host}: powered off (init {init} killed)")
    deadline = time.time() + 30
    for host in hosts:
        nspawn = state["hosts"][host]["pid"]
        while lab.alive(nspawn) and time.time() < deadline:
            time.sleep(0.1)
        lab.stop_host(host, state, timeout=5)
    return "; ".join(killed)


def poweron(host: str, wait: bool = True) -> str:
    data = config.load()
    state = lab.load_state()
    lab.start_host(data["topology"], host, state)
    if wait:
        lab.wait_ssh_or_restart(data["topology"], [host], state, timeout=120)
    return f"{host}: powered on"


def _addresses(host: str) -> list[str]:
    return list(config.load()["topology"]["hosts"][host]["addresses"].values())


def partition(host: str, peers: list[str] | None = None) -> str:
    """Drop traffic between ``host`` and ``peers`` (every other host if None)."""
    topo = config.load()["topology"]
    peers = peers or [h for h in topo["hosts"] if h != host]
    addrs = sorted({a for p in peers for a in _addresses(p)})
    if not peers:
        raise RuntimeError("partition needs at least one peer")
    controls = [n["control_address"] for n in topo["networks"].values() if n.get("control_address")]
    if set(peers) >= set(topo["hosts"]) - {host}:  # from everyone: the control machine too
        addrs = sorted(set(addrs) | set(controls))
    heal(host, quiet=True)
    script = (
        f"add table inet {FAULT_TABLE}\n"
        f"add chain inet {FAULT_TABLE} in {{ type filter hook input priority -10; policy accept; }}\n"
        f"add chain inet {FAULT_TABLE} out {{ type filter hook output priority -10; policy accept; }}\n"
        f"add rule inet {FAULT_TABLE} in ip saddr {{ {', '.join(addrs)} }} drop\n"
        f"add rule inet {FAULT_TABLE} out ip daddr {{ {', '.join(addrs)} }} drop\n"
    )
    pid = lab.leader_pid(host)
    res = subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", "-f", "-"], input=script, capture_output=True,
                         text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{host}: partition failed: {res.stderr.strip()}")
    return f"{host}: cut off from {', '.join(peers)}"


def heal(host: str, quiet: bool = False) -> str:
    pid = lab.leader_pid(host)
    subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", "delete", "table", "inet", FAULT_TABLE],
                   capture_output=True, text=True, timeout=30)
    return f"{host}: partition healed"


def etcd_stop(host: str) -> str:
    _nsenter(host, ["systemctl", "stop", "etcd"])
    return f"{host}: etcd stopped"


def etcd_start(host: str) -> str:
    _nsenter(host, ["systemctl", "start", "--no-block", "etcd"])
    return f"{host}: etcd starting"


def pgbouncer_kill(host: str) -> str:
    return _kill_unit(host, "pgbouncer")


def haproxy_kill(host: str) -> str:
    """SIGKILL to every HAProxy process on ``host`` (master and workers); its unit restarts it."""
    _nsenter(host, ["systemctl", "kill", "--signal=KILL", "haproxy"])
    return f"{host}: haproxy killed (SIGKILL); systemd restarts it"


def _freeze_pids(host: str, what: str) -> list[int]:
    if what == "patroni":
        return [patroni_pid(host)]
    if what == "postgres":
        return [postmaster_pid(host)]
    if what == "pgbouncer":
        return [unit_pid(host, "pgbouncer")]
    if what == "host":
        return [patroni_pid(host), postmaster_pid(host)]
    raise RuntimeError(f"freeze what? {what!r}: patroni, postgres, pgbouncer or host")


def freeze(host: str, what: str = "host") -> str:
    """SIGSTOP Patroni and/or the postmaster: a hung node that still holds its sockets."""
    pids = _freeze_pids(host, what)
    _nsenter(host, ["kill", "-STOP", *map(str, pids)])
    return f"{host}: {what} frozen (pids {', '.join(map(str, pids))})"


def thaw(host: str, what: str = "host") -> str:
    pids = _freeze_pids(host, what)
    _nsenter(host, ["kill", "-CONT", *map(str, pids)])
    return f"{host}: {what} thawed"


ACTIONS = {
    "postgres-kill": postgres_kill,
    "patroni-kill": patroni_kill,
    "pgbouncer-kill": pgbouncer_kill,
    "haproxy-kill": haproxy_kill,
    "poweroff": poweroff,
    "poweron": poweron,
    "partition": partition,
    "heal": heal,
    "etcd-stop": etcd_stop,
    "etcd-start": etcd_start,
    "freeze": freeze,
    "thaw": thaw,
}
