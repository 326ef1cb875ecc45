"""The database stack after orch.deploy: one leader, streaming replicas,
HAProxy routing, switchover, crash failover, dynamic configuration."""
import time

import psycopg
import pytest
import yaml

from labkit import BIN, alert_firing, healthy_cluster, python_on, run, salt_ssh, state_summary, wait_for
from labkit import patroni_members as members
from halite import config, formats, view

pytestmark = pytest.mark.lab
DATA = config.load()
APP = DATA["users"]["app"]
PROXY = DATA["topology"]["hosts"][config.hosts_with_role(DATA["topology"], "haproxy")[0]]["addresses"]["edge"]
DB_HOSTS = config.hosts_with_role(DATA["topology"], "db")
ADDR = {h: config.cluster_address(DATA["topology"], h) for h in DB_HOSTS}


def dsn(port: int, password: str = APP["password"]) -> str:
    return formats.conninfo(*formats.cluster_options(DATA, PROXY, port, ca=view.control_ca(DATA)),
                            ("dbname", APP["database"]), ("user", APP["username"]),
                            ("password", password), ("connect_timeout", 3))


def write_probe(tag: str) -> str:
    """Write a row through the write port; returns the server address that took it."""
    with psycopg.connect(dsn(DATA["haproxy"]["write_port"]), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS halite_test(tag text PRIMARY KEY, at timestamptz DEFAULT now())")
        row = conn.execute("INSERT INTO halite_test(tag) VALUES (%s) RETURNING host(inet_server_addr())", (tag,)).fetchone()
        return row[0]


def leader_name():
    return [m["name"] for m in members() if m["role"] == "leader"]


def test_one_leader_and_two_streaming_replicas(deployed):
    ms = members()
    assert sorted(m["name"] for m in ms) == DB_HOSTS
    assert len([m for m in ms if m["role"] == "leader"]) == 1
    replicas = [m for m in ms if m["role"] != "leader"]
    assert len(replicas) == 2 and all(m["state"] == "streaming" for m in replicas), ms
    assert all(m["timeline"] == ms[0]["timeline"] for m in ms)


def test_halite_cluster_watch_refreshes_the_table(deployed):
    res = run([BIN / "halite", "cluster", "--watch", "--interval", "0.5", "--count", "2"], timeout=60, check=True)
    assert res.stdout.count("Ctrl-C ends") == 2, res.stdout
    tables = res.stdout.split("Ctrl-C ends")[1:]
    for table in tables:
        assert table.count(" leader ") == 1 and table.count(" streaming ") == 2, res.stdout


def test_etcd_has_three_healthy_members(deployed):
    rc, data = salt_ssh(DB_HOSTS[0], "etcd_cluster.health")
    assert rc == 0, data
    health = data[DB_HOSTS[0]]
    assert health["healthy"] is True, health
    assert len(health["members"]) == 3


def test_row_written_through_5000_is_read_through_5001(deployed):
    tag = f"rt-{time.time_ns()}"
    primary = write_probe(tag)
    assert primary in ADDR.values()

    def read_back():
        with psycopg.connect(dsn(DATA["haproxy"]["read_port"]), autocommit=True) as conn:
            return conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery() FROM halite_test WHERE tag = %s",
                                (tag,)).fetchone()

    server, in_recovery = wait_for(read_back, 30, 0.5, "the row on a replica")
    assert in_recovery is True and server != primary


def test_pgbouncer_authenticates_through_auth_query(deployed):
    # the user names only: a password read back through salt-ssh would stay in the control
    # machine's job cache (the security test's leak scan found the monitor's there)
    rc, data = salt_ssh(DB_HOSTS[0], "cmd.run", "cut -d' ' -f1 /etc/pgbouncer/userlist.txt")
    assert rc == 0
    # only the auth user's line (and the exporters' stats login) is on disk, not the app's
    names = [n.strip('"') for n in data[DB_HOSTS[0]].split()]
    assert APP["username"] not in names and DATA["users"]["pgbouncer_auth"]["username"] in names, names
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn(DATA["haproxy"]["write_port"], password="wrong-password"))


# HAProxy's stats page as CSV, read on the HAProxy host itself: the page listens on the
# host's cluster address only (the control machine has no route there) and asks for the
# login generated per install (halite.view.with_generated). The Authorization header is on
# the host's command line for the length of one request: a lab test only.
STATS_CSV = r'''
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": sys.argv[2]} if sys.argv[2] else {})
try:
    print(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5).read().decode())
except urllib.error.HTTPError as exc:
    print(f"HTTP {exc.code}")
'''


def haproxy_stats_csv(login: bool = True) -> str:
    """The stats page's CSV (or ``HTTP <code>``), with the install's login or none."""
    import base64
    import shlex

    from halite import view

    host = config.hosts_with_role(DATA["topology"], "haproxy")[0]
    data = view.with_generated(DATA, ["haproxy"])
    h = data["haproxy"]
    token = "Basic " + base64.b64encode(f"{h['stats_user']}:{h['stats_password']}".encode()).decode() if login else ""
    url = f"http://{view.haproxy_stats(data, host)['bind']}/;csv"
    res = run([BIN / "halite", "lab", "ssh", host,
               f"python3 -c {shlex.quote(STATS_CSV)} {shlex.quote(url)} {shlex.quote(token)}"], check=True)
    return res.stdout


def test_haproxy_stats_page_asks_for_its_login(deployed):
    assert haproxy_stats_csv(login=False).strip() == "HTTP 401"
    assert "primary," in haproxy_stats_csv()


def haproxy_write_backend():
    """The write backend's servers that are up, but for the backups (straight to PostgreSQL)."""
    lines = haproxy_stats_csv().splitlines()
    fields = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(fields, line.split(","))) for line in lines[1:] if line.startswith("primary,")]
    return [r["svname"] for r in rows if r["status"] == "UP" and r["svname"] not in ("FRONTEND", "BACKEND")
            and r["bck"] == "0"]


HAPROXY_ADDR = config.cluster_address(DATA["topology"], config.hosts_with_role(DATA["topology"], "haproxy")[0])


def session_route(port: int):
    """(client address PostgreSQL sees, in recovery?, the member's address) of a session through
    HAProxy's ``port``: the client is the member itself (or a local socket, None) through its
    PgBouncer, the HAProxy host when HAProxy went straight to PostgreSQL."""
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        return conn.execute("SELECT host(inet_client_addr()), pg_is_in_recovery(), host(inet_server_addr())").fetchone()


def fault(*args: str) -> None:
    run([BIN / "halite", "lab", "fault", *args], check=True)


def test_routing_follows_the_pooler(deployed):
    """A member counts as up for HAProxy only when its PgBouncer answers: with the primary's
    pooler hung, then killed, writes go straight to the primary's PostgreSQL and come back
    through the pooler once it answers again; with the replicas' poolers hung, reads go to
    the primary. Prints how long each took (polling every 0.5 s)."""
    leader = wait_for(healthy_cluster, 120, 2, "a healthy cluster")
    replicas = [h for h in DB_HOSTS if h != leader]
    write, read = DATA["haproxy"]["write_port"], DATA["haproxy"]["read_port"]
    assert session_route(write)[0] != HAPROXY_ADDR  # through the primary's pooler
    direct = (HAPROXY_ADDR, False, ADDR[leader])
    took = {}

    t0 = time.monotonic()
    fault("freeze", leader, "--what", "pgbouncer")
    try:
        assert wait_for(lambda: session_route(write) == direct, 30, 0.5, "writes with the primary's pooler hung")
        took["writes, pooler hung"] = time.monotonic() - t0
        write_probe(f"pooler-hung-{time.time_ns()}")
    finally:
        fault("thaw", leader, "--what", "pgbouncer")
    t0 = time.monotonic()
    assert wait_for(lambda: session_route(write)[0] != HAPROXY_ADDR, 30, 0.5, "writes through the pooler again")
    took["back through the pooler"] = time.monotonic() - t0

    t0 = time.monotonic()
    fault("pgbouncer-kill", leader)
    # writes go on, directly or through the restarted pooler (systemd restarts it in a second)
    assert wait_for(lambda: session_route(write)[1] is False, 30, 0.5, "writes with the primary's pooler killed")
    took["writes, pooler killed"] = time.monotonic() - t0
    assert wait_for(lambda: session_route(write)[0] != HAPROXY_ADDR, 30, 0.5, "the restarted pooler")

    t0 = time.monotonic()
    for host in replicas:
        fault("freeze", host, "--what", "pgbouncer")
    try:
        assert wait_for(lambda: session_route(read)[1:] == (False, ADDR[leader]), 30, 0.5,
                        "reads on the primary with no replica's pooler answering")
        took["reads on the primary"] = time.monotonic() - t0
    finally:
        for host in replicas:
            fault("thaw", host, "--what", "pgbouncer")
    assert wait_for(lambda: session_route(read)[1] is True, 30, 0.5, "reads on a replica again")
    print("seconds until:", {k: round(v, 1) for k, v in took.items()})


def test_a_storm_of_clients_waits_in_the_queues_instead_of_being_refused(deployed):
    """Issue 14 item 4: 1,000 clients at once through each port (before: refused from about
    the 400th on the read port, "no more connections allowed (max_client_conn)"), and HAProxy
    really runs with the limits it was given (a reload it cannot carry out leaves the old
    configuration running while systemd reports success)."""
    from halite import stormbench

    for port in ("read", "write"):
        row = stormbench.storm(dsn(DATA["haproxy"][f"{port}_port"]), 1000, procs=2, port=port)
        assert (row["connected"], row["failed"], row["queries_ok"]) == (1000, 0, 1000), row
    info = python_on(config.hosts_with_role(DATA["topology"], "haproxy")[0], """
import json, socket
s = socket.socket(socket.AF_UNIX); s.connect("/run/haproxy/admin.sock"); s.sendall(b"show info\\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
print(json.dumps(dict(line.split(": ", 1) for line in out.decode().splitlines() if ": " in line)))
""")
    b = view.haproxy_backends(DATA)
    assert int(info["Maxconn"]) == b["global_maxconn"], info
    assert int(info["Maxsock"]) <= b["nofile"], info


def test_switchover_to_a_named_replica_moves_haproxy_too(deployed):
    wait_for(healthy_cluster, 120, 2, "a healthy cluster")
    old = leader_name()[0]
    # with synchronous_mode Patroni only hands over to the synchronous standby
    candidate = [m["name"] for m in members() if m["role"] == "sync_standby"][0]
    rc, data = salt_ssh(DB_HOSTS[0], "patroni.switchover", f"candidate={candidate}")
    assert rc == 0, data
    assert wait_for(lambda: leader_name() == [candidate], 60, 1, f"{candidate} to lead")
    assert wait_for(lambda: haproxy_write_backend() == [candidate], 30, 0.5, "HAProxy to follow")
    assert wait_for(lambda: write_probe(f"sw-{time.time_ns()}") == ADDR[candidate], 30, 0.5, "writes on the new primary")
    wait_for(healthy_cluster, 120, 2, "the old leader to stream again")


def test_kill_9_of_the_leader_postmaster_fails_over_by_itself(deployed):
    old = wait_for(healthy_cluster, 120, 2, "a healthy cluster")
    res = run([BIN / "halite", "lab", "ssh", old,
               "kill -9 $(head -1 /var/lib/postgresql/15/halite/postmaster.pid) && echo killed"], check=True)
    assert "killed" in res.stdout
    t0 = time.monotonic()
    server = wait_for(lambda: write_probe(f"k9-{time.time_ns()}"), 120, 0.5, "the write path to work again")
    assert server in ADDR.values()
    print(f"write path back after {time.monotonic() - t0:.1f}s on {server}")
    new = wait_for(healthy_cluster, 180, 2, "the cluster to heal (one leader, every replica streaming)")
    if view.monitoring_host_of(DATA["topology"]):
        # the failover is told: PatroniLeaderChanged fires for the new leader (no `for:`)
        wait_for(lambda: alert_firing("PatroniLeaderChanged", new), 120, 1, f"PatroniLeaderChanged for {new}")
        print(f"PatroniLeaderChanged firing for {new} {time.monotonic() - t0:.1f}s after the kill")


def test_changed_ttl_is_applied_with_exact_changes(deployed, tmp_path):
    current = DATA["patroni"]["dcs"]["ttl"]
    new = current + 5
    override = tmp_path / "ttl.yaml"
    override.write_text(yaml.safe_dump({"patroni": {"dcs": {"ttl": new}}}))
    env = {"HALITE_SETTINGS": str(override)}
    try:
        rc, data = salt_ssh(DB_HOSTS[0], "state.apply", "patroni.dynamic", env=env)
        summary = state_summary(data)[DB_HOSTS[0]]
        assert rc == 0 and summary["failed"] == [], summary
        # exactly this change in the DCS (patroni.yml's bootstrap section follows the pillar too)
        assert summary["changed"]["patroni-dynamic-config"] == {"ttl": {"old": current, "new": new}}, summary
        rc, data = salt_ssh(DB_HOSTS[0], "patroni.config")
        assert data[DB_HOSTS[0]]["ttl"] == new
        rc, data = salt_ssh(DB_HOSTS[0], "state.apply", "patroni.dynamic", env=env)
        assert state_summary(data)[DB_HOSTS[0]]["changed"] == {}
    finally:
        rc, data = salt_ssh(DB_HOSTS[0], "state.apply", "patroni.dynamic")
    assert state_summary(data)[DB_HOSTS[0]]["changed"]["patroni-dynamic-config"] == {"ttl": {"old": new, "new": current}}


def test_second_orch_deploy_reports_zero_changes(deployed):
    wait_for(healthy_cluster, 180, 2, "a healthy cluster")
    res = run([BIN / "salt-run", "state.orchestrate", "orch.deploy", "--out=json"], timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:]
    import json
    steps = json.loads(res.stdout)["data"]
    for key, step in next(iter(steps.values())).items():
        for host, ret in step["changes"].get("ret", {}).items():
            if key.startswith("halite_ssh_|-"):
                # a function step (the salt-ssh wipe): its answer, not states, and it succeeded
                assert step["result"] is True, (step["__id__"], host, ret)
                continue
            changed = {k: v["changes"] for k, v in ret.items() if v.get("changes")}
            assert changed == {}, (step["__id__"], host, changed)
