"""Failover scenarios in the lab, measured.

Each scenario starts the workload checker (writers through HAProxy's write
port, readers through its read port), injects one fault with
:mod:`halite.faults`, undoes it, waits until the cluster heals by itself (one
leader, every replica streaming, the old primary back), then proves from the
workload's evidence how long writes and reads were down, whether any
acknowledged write was lost and whether two primaries took writes at once.

Everything here targets the lab's own hosts only, and every wait is bounded.

CLI Example::

    halite bench failover --runs 3                # every scenario, both profiles
    halite bench failover --scenarios switchover,postgres-crash --profiles halite --runs 1
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Callable

from halite import config, faults, formats, lab, view
from halite.model import PROFILE_KEYS
from halite.workload import Workload

SCENARIOS = [
    "switchover", "postgres-crash", "patroni-crash", "primary-poweroff", "primary-partition",
    "replica-poweroff", "etcd-member-loss", "etcd-quorum-loss", "primary-hang", "full-restart",
    # routing (issue 14): the pooler on the primary's host dies or hangs, HAProxy dies
    "pgbouncer-kill", "pgbouncer-hang", "haproxy-kill",
]
#: Scenarios whose fault must be undone before anything can serve writes again.
NEEDS_UNDO = ("full-restart",)
#: Scenarios where the leader stops renewing its lock and the replicas wait for it to expire:
#: their write gap depends on the lock's age at the fault, recorded by :class:`LockWatch`.
LOCK_EXPIRY = ("primary-poweroff", "primary-partition", "primary-hang")
#: What Patroni logs on the leader each time its HA loop has renewed the leader lock.
LOCK_RENEWED = "the leader with the lock"

# Python run in the app host's network namespace (it may reach Patroni's API).
_TCP = """
import json, socket, sys
down = []
for name, host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        down.append(name)
print(json.dumps(down))
"""
_HTTP = r"""
import base64, json, os, ssl, sys, urllib.request
method, url, body, timeout, ca_file, cert_file, key_file = sys.argv[1:8]
# https: verified against halite's CA (files of the control machine: only the network is the
# namespace's), showing the control machine's client certificate (unsafe calls need one)
context = ssl.create_default_context(cafile=ca_file) if ca_file else None
if context and cert_file:
    context.load_cert_chain(cert_file, key_file)
user, pw = os.environ.get("HALITE_API_USER", ""), os.environ.get("HALITE_API_PASSWORD", "")
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"})
if user:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=float(timeout), context=context) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
"""


def log(msg: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class AlertWatch:
    """Prometheus's alerts during one run, as an operator would have been told: polls
    ``/api/v1/alerts`` on the monitoring host every ``interval`` seconds (a thread) and keeps,
    for each alert name, when it was first seen pending and firing, in seconds after
    ``t0`` (time.monotonic()). Without a monitoring host it records nothing.

    Example::

        watch = AlertWatch(prometheus_url, t0=time.monotonic()).start()
        ...  # the fault, the recovery
        watch.stop()   # {"PatroniLeaderChanged": {"pending_s": None, "firing_s": 7.1}}
    """

    def __init__(self, url: str | None, t0: float, interval: float = 1.0, timeout: float = 3.0):
        import threading

        self.url, self.t0, self.interval, self.timeout = url, t0, interval, timeout
        self.seen: dict[str, dict] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alert-watch", daemon=True)

    def look(self) -> None:
        """One poll: record the alerts Prometheus holds now."""
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.url}/api/v1/alerts", timeout=self.timeout) as resp:
            alerts = json.load(resp)["data"]["alerts"]
        now = round(time.monotonic() - self.t0, 1)
        for a in alerts:
            entry = self.seen.setdefault(a["labels"]["alertname"], {"pending_s": None, "firing_s": None})
            key = "firing_s" if a["state"] == "firing" else "pending_s"
            if entry[key] is None:
                entry[key] = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.look()
            except (OSError, ValueError, KeyError):
                self.errors += 1
            self._stop.wait(self.interval)

    def start(self) -> "AlertWatch":
        if self.url:
            self._thread.start()
        return self

    def stop(self) -> dict:
        """Stop polling; the alerts seen (name -> {"pending_s", "firing_s"})."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + self.interval + 1)
        return dict(sorted(self.seen.items()))


class LockWatch:
    """When the leader last renewed its lock before a fault, from its Patroni journal.

    A follower (``journalctl -f`` on ``host``, entered with nsenter, bounded by ``timeout``
    so it ends by itself) runs from before the fault, starting with the journal's last 30
    lines (the renewal before it started counts too); a power cut kills it with the host.
    :meth:`age_at` reads what it printed and returns the lock's age at the fault: seconds
    from the last renewal (Patroni's "... the leader with the lock" line) to the fault.

    Example::

        watch = LockWatch("db-01").start()
        t_cut = time.time(); faults.poweroff("db-01")
        watch.age_at(t_cut)   # 1.84 (None when no renewal was seen)
    """

    def __init__(self, host: str, timeout: float = 120.0):
        self.host, self.timeout = host, timeout
        self.renewals: list[float] = []
        self._proc: subprocess.Popen | None = None

    def start(self) -> "LockWatch":
        pid = lab.leader_pid(self.host)
        self._proc = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-a", "timeout", str(int(self.timeout)),
             "journalctl", "-f", "-n", "30", "-u", "patroni", "-o", "short-unix", "--no-pager"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    @staticmethod
    def parse(lines: list[str]) -> list[float]:
        """Times (epoch seconds) of the lock renewals in ``journalctl -o short-unix`` lines."""
        times = []
        for line in lines:
            stamp, _, rest = line.partition(" ")
            if LOCK_RENEWED in rest:
                try:
                    times.append(float(stamp))
                except ValueError:
                    continue
        return times

    def age_at(self, t_fault: float, settle: float = 1.0) -> float | None:
        """The lock's age at ``t_fault`` (epoch seconds): the follower is read for ``settle``
        more seconds (lines already written reach the pipe), then stopped."""
        if self._proc is None:
            return None
        import select

        lines: list[str] = []
        deadline = time.monotonic() + settle
        out = self._proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = out.readline()
            if not line:  # the host (and the follower with it) is gone
                break
            lines.append(line)
        self.stop()
        self.renewals = [t for t in self.parse(lines) if t <= t_fault]
        return round(t_fault - self.renewals[-1], 3) if self.renewals else None

    def stop(self) -> None:
        """End the follower (our own child, by its PID); its journalctl ends on its timeout."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(timeout=10)
            self._proc.stdout.close()


class Cluster:
    """The lab's cluster as the runner sees it (Patroni's REST API, from the app host)."""

    def __init__(self, data: dict | None = None):
        self.data = data or config.load()
        topo = self.data["topology"]
        self.db_hosts = config.hosts_with_role(topo, "db")
        self.proxy = config.hosts_with_role(topo, "haproxy")[0]
        self.addr = {h: config.cluster_address(topo, h) for h in self.db_hosts}
        api = self.data["patroni"]["restapi"]
        self.api_port, self.api_user, self.api_pw = api["port"], api["username"], api["password"]
        # Patroni's API over https, verified against halite's CA as the control machine keeps it
        tls = view.tls_on(self.data)["patroni_api"]
        self.api_scheme = "https" if tls else "http"
        self.api_ca_file = str(view.state_dir(self.data) / "ca.crt") if tls else ""
        self.api_client_cert = [str(p) for p in view.control_client_cert(self.data)] if tls else ["", ""]
        app = self.data["users"]["app"]
        edge = topo["hosts"][self.proxy]["addresses"].get("edge") or self.addr.get(self.proxy)
        login = [("dbname", app["database"]), ("user", app["username"]), ("password", app["password"])]
        # through HAProxy's edge address, verifying the cluster's certificate against the CA here
        ca = view.control_ca(self.data)
        self.write_dsn = formats.conninfo(*formats.cluster_options(self.data, edge, self.data["haproxy"]["write_port"], ca=ca),
                                          *login)
        self.read_dsn = formats.conninfo(*formats.cluster_options(self.data, edge, self.data["haproxy"]["read_port"], ca=ca),
                                         *login)

    def http(self, method: str, host: str, path: str, body: dict | None = None,
             timeout: float = 3) -> tuple[int, str]:
        """One call to a member's REST API; ``timeout`` bounds the wait for its answer."""
        pid = lab.leader_pid(self.proxy)
        unsafe = method != "GET"
        res = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "python3", "-c", _HTTP, method,
             f"{self.api_scheme}://{self.addr[host]}:{self.api_port}{path}",
             json.dumps(body) if body is not None else "", str(timeout), self.api_ca_file,
             *self.api_client_cert],
            # the credentials in the environment, not on a command line
            env=dict(os.environ, HALITE_API_USER=self.api_user if unsafe else "",
                     HALITE_API_PASSWORD=self.api_pw if unsafe else ""),
            capture_output=True, text=True, timeout=timeout + 12)
        if res.returncode != 0:
            raise RuntimeError(f"{method} {host}{path}: {res.stderr.strip().splitlines()[-1] if res.stderr else 'failed'}")
        out = json.loads(res.stdout)
        return out["status"], out["body"]

    def members(self) -> list[dict]:
        """Members from the first db host whose API answers."""
        last = None
        for host in self.db_hosts:
            try:
                status, body = self.http("GET", host, "/cluster")
                if status == 200:
                    return json.loads(body).get("members", [])
            except Exception as exc:  # noqa: BLE001 - try the next host
                last = exc
        raise RuntimeError(f"no Patroni API answered: {last}")

    def leader(self) -> str | None:
        try:
            ms = self.members()
        except RuntimeError:
            return None
        leaders = [m["name"] for m in ms if m.get("role") in ("leader", "master", "primary")]
        return leaders[0] if len(leaders) == 1 else None

    def healthy(self) -> bool:
        try:
            ms = self.members()
        except RuntimeError:
            return False
        leaders = [m for m in ms if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running"]
        streaming = [m for m in ms if m.get("role") not in ("leader", "master", "primary")
                     and m.get("state") == "streaming"]
        names = {m["name"] for m in ms}
        return (len(leaders) == 1 and len(streaming) == len(self.db_hosts) - 1 and names == set(self.db_hosts)
                and not self.poolers_down())

    def poolers_down(self) -> list[str]:
        """db hosts whose PgBouncer does not accept a TCP connection on the host's address (seen from HAProxy's host).

        Patroni's REST API, which HAProxy checks, can say "primary" while the
        pooler in front of it listens only on 127.0.0.1 (seen after a power cycle).
        """
        port = int(self.data["pgbouncer"]["port"])
        targets = json.dumps([[h, self.addr[h], port] for h in self.db_hosts])
        res = subprocess.run(
            ["nsenter", "-t", str(lab.leader_pid(self.proxy)), "-n", "python3", "-c", _TCP, targets],
            capture_output=True, text=True, timeout=15)
        if res.returncode != 0:
            return list(self.db_hosts)
        return json.loads(res.stdout)

    def wait_healthy(self, timeout: float, stable_s: float = 5.0) -> float:
        """Seconds until the cluster was healthy and stayed so for ``stable_s`` seconds.

        Stability matters: a former primary coming back from a partition can
        stream for a moment, then stop for pg_rewind and start again.
        :returns: the time of the first look of the stable stretch.
        """
        t0 = time.monotonic()
        first_ok = None
        while time.monotonic() - t0 < timeout:
            now = time.monotonic()
            if self.healthy():
                first_ok = now if first_ok is None else first_ok
                if now - first_ok >= stable_s:
                    return first_ok - t0
            else:
                first_ok = None
            time.sleep(1)
        table = "unavailable"
        try:
            table = ", ".join(f"{m['name']}:{m.get('role')}/{m.get('state')}" for m in self.members())
        except RuntimeError as exc:
            table = str(exc)
        down = self.poolers_down()
        poolers = f"; PgBouncer not answering on {', '.join(down)}" if down else ""
        raise RuntimeError(f"cluster not healthy after {timeout:.0f}s (members: {table}{poolers})")

    def sync_standby(self) -> str | None:
        for m in self.members():
            if m.get("role") == "sync_standby":
                return m["name"]
        return None

    def apply_profile(self, profile: str) -> dict:
        """PATCH the profile's timing into the DCS (the pillar keeps the named profiles)."""
        values = self.data["patroni"]["profiles"][profile]
        patch = {k: values[k] for k in PROFILE_KEYS if k in values}
        leader = self.leader() or self.db_hosts[0]
        status, body = self.http("PATCH", leader, "/config", patch)
        if status != 200:
            raise RuntimeError(f"PATCH /config for profile {profile} answered {status}: {body}")
        time.sleep(values.get("loop_wait", 10) + 1)
        return patch

    def switchover(self, candidate: str | None = None) -> str:
        leader = self.leader()
        body = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        # Patroni answers a switchover only once the new leader holds the key (or it gave up),
        # which takes longer than a status call on a loaded machine (a CI run timed out at 3 s)
        status, text = self.http("POST", leader, "/switchover", body, timeout=60)
        if status != 200:
            raise RuntimeError(f"switchover answered {status}: {text}")
        return text


def _wait_writes_back(wl: Workload, after: float, timeout: float) -> float | None:
    """Seconds from ``after`` until writes flow again after the fault's gap (None on time-out).

    "Again" means an acknowledged write that follows a pause of at least 0.5 s
    after the fault, or, with no pause at all, the first write after it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [a.t for a in wl.results()["acks"] if a.t > after]
        prev = after
        for t in times:
            if t - prev >= 0.5:
                return t - after
            prev = t
        if times and time.monotonic() - times[-1] < 0.5 and time.monotonic() - after > 3:
            return times[0] - after  # writes never stopped
        time.sleep(0.5)
    return None


def inject(cluster: Cluster, scenario: str) -> tuple[str, Callable[[], None], float]:
    """Inject the fault; return (what was done, its undo, seconds to hold before undoing)."""
    leader = cluster.leader()
    if not leader:
        raise RuntimeError("no leader before the fault")
    replicas = [h for h in cluster.db_hosts if h != leader]
    ttl = cluster.data["patroni"]["dcs"]["ttl"]
    nothing = lambda: None  # noqa: E731
    if scenario == "switchover":
        target = cluster.sync_standby() or replicas[0]
        cluster.switchover(target)
        return f"switchover {leader} -> {target}", nothing, 0
    if scenario == "postgres-crash":
        return faults.postgres_kill(leader), nothing, 0
    if scenario == "patroni-crash":
        return faults.patroni_kill(leader), nothing, 0
    if scenario == "primary-poweroff":
        return faults.poweroff(leader), lambda: faults.poweron(leader), 0
    if scenario == "primary-partition":
        return faults.partition(leader), lambda: faults.heal(leader), 0
    if scenario == "replica-poweroff":
        target = cluster.sync_standby() or replicas[0]
        return faults.poweroff(target), lambda: faults.poweron(target), 10
    if scenario == "etcd-member-loss":
        return faults.etcd_stop(leader), lambda: faults.etcd_start(leader), 15
    if scenario == "etcd-quorum-loss":
        lost = replicas[:2] if len(replicas) >= 2 else replicas
        for host in lost:
            faults.etcd_stop(host)

        def undo():
            for h in lost:
                faults.etcd_start(h)
        return f"etcd stopped on {', '.join(lost)} (quorum lost)", undo, ttl + 10
    if scenario == "primary-hang":
        return faults.freeze(leader, "host"), lambda: faults.thaw(leader, "host"), ttl + 5
    if scenario == "pgbouncer-kill":
        return faults.pgbouncer_kill(leader), nothing, 0
    if scenario == "pgbouncer-hang":
        # HAProxy sends writes straight to the primary's PostgreSQL meanwhile
        return (faults.freeze(leader, "pgbouncer"), lambda: faults.thaw(leader, "pgbouncer"), 15)
    if scenario == "haproxy-kill":
        return faults.haproxy_kill(cluster.proxy), nothing, 0
    if scenario == "full-restart":
        faults.poweroff(*cluster.db_hosts)

        def undo():
            for h in cluster.db_hosts:
                faults.poweron(h, wait=False)
            lab.wait_ssh_or_restart(cluster.data["topology"], cluster.db_hosts, lab.load_state(), timeout=180)
        return "every db host powered off", undo, 2
    raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")


def run_scenario(scenario: str, profile: str = "halite", cluster: Cluster | None = None,
                 recover_timeout: float = 120, heal_timeout: float = 240, writers: int = 4,
                 rng=None) -> dict:
    """One measured run of ``scenario``; the cluster is left healthy (or this raises).

    The fault comes at a random offset (``rng``, a :class:`random.Random`; seeded from the
    clock by default), uniform over one ``loop_wait`` of the profile, after the workload has
    run 3 s: whatever Patroni's HA loop was doing when the run began, the fault falls at any
    point of the loop alike. For the scenarios in :data:`LOCK_EXPIRY` the run records the
    leader lock's age at the fault (:class:`LockWatch`).
    """
    import random

    cluster = cluster or Cluster()
    rng = rng or random.Random()
    loop_wait = float(cluster.data["patroni"]["profiles"].get(profile, {}).get(
        "loop_wait", cluster.data["patroni"]["dcs"].get("loop_wait", 10)))
    cluster.wait_healthy(heal_timeout)
    sync = bool(cluster.data["patroni"]["dcs"].get("synchronous_mode"))
    wl = Workload(cluster.write_dsn, cluster.read_dsn, writers=writers, readers=2, max_seconds=recover_timeout + heal_timeout + 120)
    wl.setup()
    wl.start()
    pending_undo = None
    watch = None
    lock = None
    lock_age = None
    alerts: dict = {}
    try:
        time.sleep(3)
        leader_before = cluster.leader()
        if scenario in LOCK_EXPIRY and leader_before:
            lock = LockWatch(leader_before).start()
        offset = round(rng.uniform(0, loop_wait), 3)
        time.sleep(offset)
        t_fault_wall = time.time()
        t_fault = wl.mark_fault()
        # alerts already firing before the fault (a previous run's) are told apart by the
        # first poll, at 0 s: only later times are this fault's
        watch = AlertWatch(view.prometheus_url(cluster.data), t0=time.monotonic()).start()
        what, undo, hold = inject(cluster, scenario)
        pending_undo = undo
        if lock is not None:
            lock_age = lock.age_at(t_fault_wall)
        log(f"{scenario} [{profile}]: {what} (at a random {offset:.2f}s into a {loop_wait:g}s loop"
            + (f"; the lock {lock_age:.2f}s old)" if lock_age is not None else ")"))
        if scenario in NEEDS_UNDO:  # nothing can serve writes until the hosts are back
            time.sleep(hold)
            pending_undo = None
            undo()
            back = _wait_writes_back(wl, t_fault, recover_timeout + 180)
        else:
            back = _wait_writes_back(wl, t_fault, recover_timeout)
            if hold:
                time.sleep(max(0.0, hold - (time.monotonic() - t_fault)))
            pending_undo = None
            undo()
        log(f"{scenario} [{profile}]: writes back after {back:.1f}s" if back is not None
            else f"{scenario} [{profile}]: writes not back within {recover_timeout:.0f}s")
        t_wait = time.monotonic()
        heal_wait = cluster.wait_healthy(heal_timeout)
        heal_s = t_wait + heal_wait - t_fault  # healed = the start of the stable stretch
        # The run ends only once writes flow again, so a gap is never cut short.
        flowing_deadline = time.monotonic() + 60
        while time.monotonic() < flowing_deadline:
            acks = wl.results()["acks"]
            if acks and time.monotonic() - acks[-1].t < 0.3:
                break
            time.sleep(0.2)
        time.sleep(2)
    finally:
        if pending_undo is not None:  # interrupted (Ctrl-C, SIGTERM, an error): never leave the fault behind
            log(f"{scenario} [{profile}]: interrupted, undoing the fault")
            pending_undo()
        wl.stop()
        if lock is not None:
            lock.stop()
        if watch is not None:
            alerts = watch.stop()
    res = wl.analyze(fault_time=t_fault, verify_dsn=cluster.write_dsn)
    run = {
        "scenario": scenario,
        "profile": profile,
        "synchronous_mode": sync,
        "write_unavailable_s": res["write_unavailable_s"],
        "read_unavailable_s": res["read_unavailable_s"],
        "acked_writes": res["acked_writes"],
        "lost_writes": res["lost_writes"],
        "dual_primary": res["dual_primary"],
        "heal_s": round(heal_s, 2),
        "fault": what,
        "leader_before": leader_before,
        "leader_after": cluster.leader(),
        "writes_back_s": None if back is None else round(back, 2),
        # when in Patroni's loop the fault came: a random offset, and (lock-expiry scenarios)
        # the leader lock's age then, from the leader's journal (None: no renewal seen)
        "cut_offset_s": offset,
        "loop_wait": loop_wait,
        "lock_age_s": lock_age,
        "unknown_outcome": res["unknown_outcome"],
        "lost_ids": res["lost_ids"],
        "dual_primary_evidence": res["dual_primary_evidence"][:3],
        "servers_seen": res["servers_seen"],
        "timeline": res["timeline"],
        # Prometheus's alerts during the run: seconds from the fault to pending and to firing
        # (firing at 0 s: it fired before the fault, a previous run's)
        "alerts": alerts,
    }
    log(f"{scenario} [{profile}]: write gap {run['write_unavailable_s']:.1f}s, read gap "
        f"{run['read_unavailable_s']:.1f}s, {run['acked_writes']} acked, {run['lost_writes']} lost, "
        f"dual primary {run['dual_primary']}, healed after {run['heal_s']:.0f}s (+{heal_wait:.0f}s after undo)")
    if alerts:
        log(f"{scenario} [{profile}]: alerts firing after " + ", ".join(
            f"{name} {a['firing_s']}s" for name, a in alerts.items() if a["firing_s"] is not None))
    return run


def bench(scenarios: list[str], profiles: list[str], runs: int, out_dir: str = "bench/results") -> list[dict]:
    from halite import report

    cluster = Cluster()
    results: list[dict] = []
    try:
        for profile in profiles:
            log(f"profile {profile}: {cluster.apply_profile(profile)}")
            for n in range(runs):
                for scenario in scenarios:
                    log(f"run {n + 1}/{runs}: {scenario} [{profile}]")
                    results.append(run_scenario(scenario, profile, cluster))
                    report.write_results(results, out_dir=out_dir, plot=False)  # progress survives an interruption
    finally:
        cluster.apply_profile(cluster.data["patroni"]["profile"])
    paths = report.write_results(results, out_dir=out_dir)
    report.print_table(results)
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return results
