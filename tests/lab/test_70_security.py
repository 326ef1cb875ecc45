"""Tests that try to get in: every link refuses clear text, a certificate from
another CA and a call without credentials, from a host the firewall lets in.

Each probe runs on a lab host as a fixed Python program on ``python3 -``'s stdin
(no secret on a command line); it reports what the server did, and the test
asserts that the right way in still works beside each refused one (a probe that
cannot reach the server at all would otherwise pass for a refusal).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from halite import config, pki, view
from labkit import REPO, on_hosts, python_on

pytestmark = pytest.mark.lab
DATA = config.load()
TOPO = DATA["topology"]
USERS = DATA["users"]
DB_HOSTS = config.hosts_with_role(TOPO, "db")
ADDR = {h: config.cluster_address(TOPO, h) for h in TOPO["hosts"]}
PG_PORT, PGB_PORT = DATA["postgresql"]["port"], DATA["pgbouncer"]["port"]
ETCD_PORT, API_PORT = DATA["etcd"]["client_port"], DATA["patroni"]["restapi"]["port"]
TLS = view.TLS_PATHS
TARGET, CLIENT = DB_HOSTS[0], DB_HOSTS[1]

# Runs on the host. PROBES: {"kind": "http"|"psql"|"etcdctl", ...}; prints one JSON list of
# {"rc", "status", "out", "err"}. Certificates handed over in the probe are written to 0600
# temporary files and removed afterwards.
REMOTE = r'''
import json, os, ssl, subprocess, tempfile, urllib.error, urllib.request
def tmpfile(text):
    fd, path = tempfile.mkstemp(prefix="halite-probe-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path
results = []
for p in PROBES:
    made = []
    def pem(name):
        if p.get(name + "_pem"):
            made.append(tmpfile(p[name + "_pem"]))
            return made[-1]
        return p.get(name)
    out = {"rc": None, "status": None, "out": "", "err": ""}
    try:
        if p["kind"] == "http":
            ctx = None
            if p["url"].startswith("https"):
                ctx = ssl.create_default_context(cafile=p["ca"])
                if pem("cert"):
                    ctx.load_cert_chain(pem("cert"), pem("key"))
            req = urllib.request.Request(p["url"], method=p.get("method", "GET"),
                                         data=b"{}" if p.get("method", "GET") != "GET" else None)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 urllib.request.HTTPSHandler(context=ctx))
            try:
                with opener.open(req, timeout=10) as resp:
                    out["status"] = resp.status
                    out["out"] = resp.read(300).decode("utf-8", "replace")
            except urllib.error.HTTPError as exc:
                out["status"] = exc.code
                out["out"] = exc.read(300).decode("utf-8", "replace")
        else:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ETCDCTL"))}
            env.update(p.get("env", {}))
            files = {"@cert": pem("cert"), "@key": pem("key")} if p.get("cert_pem") else {}
            argv = []
            for a in p["argv"]:
                for token, path in files.items():
                    a = a.replace(token, path)
                argv.append(a)
            res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
            out.update(rc=res.returncode, out=res.stdout.strip()[-500:], err=res.stderr.strip()[-500:])
    except Exception as exc:
        out["err"] = repr(exc)[-500:]
    finally:
        for path in made:
            os.unlink(path)
    results.append(out)
print(json.dumps(results))
'''


def probe(host: str, probes: list[dict]) -> list[dict]:
    """Run ``probes`` on ``host`` (secrets in the program on stdin, never in argv)."""
    results = python_on(host, f"PROBES = {ascii(probes)}\n{REMOTE}")
    assert len(results) == len(probes)
    return results


@pytest.fixture(scope="module")
def foreign():
    """A CA that is not halite's, and a client certificate from it named like a member."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        ca = pki.ensure_ca(where, "intruder")
        cert, key = pki.host_cert(where, CLIENT, [CLIENT], [ADDR[CLIENT]])
        yield {"ca": ca, "cert_pem": cert, "key_pem": key}


def psql(conninfo: str, password: str, foreign: dict | None = None) -> dict:
    """``SELECT 1`` through ``conninfo``; ``@cert``/``@key`` in it name the foreign pair's files."""
    p = {"kind": "psql", "argv": ["psql", "-X", "-A", "-t", "-d", conninfo, "-c", "SELECT 1"],
         "env": {"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}}
    if foreign:
        p.update(cert_pem=foreign["cert_pem"], key_pem=foreign["key_pem"])
    return p


def test_postgresql_refuses_clear_text_and_a_foreign_certificate(deployed, foreign):
    su = USERS["superuser"]
    base = f"host={ADDR[TARGET]} port={PG_PORT} dbname=postgres user={su['username']}"
    ok, no_tls, bad_cert = probe(CLIENT, [
        psql(f"{base} sslmode=verify-full sslrootcert={TLS['ca']}", su["password"]),
        psql(f"{base} sslmode=disable", su["password"]),
        psql(f"{base} sslmode=require sslcert=@cert sslkey=@key", su["password"], foreign),
    ])
    assert ok["rc"] == 0 and ok["out"] == "1", ok
    assert no_tls["rc"] != 0 and "no encryption" in no_tls["err"], no_tls
    # the server refuses the handshake: OpenSSL's alert names the unknown CA
    assert bad_cert["rc"] != 0 and "unknown ca" in bad_cert["err"].lower(), bad_cert


def test_pgbouncer_refuses_clear_text(deployed):
    app = USERS["app"]
    base = f"host={ADDR[TARGET]} port={PGB_PORT} dbname={app['database']} user={app['username']}"
    ok, plain = probe(CLIENT, [psql(f"{base} sslmode=verify-full sslrootcert={TLS['ca']}", app["password"]),
                               psql(f"{base} sslmode=disable", app["password"])])
    assert ok["rc"] == 0 and ok["out"] == "1", ok
    assert plain["rc"] != 0 and "ssl" in plain["err"].lower(), plain


def _etcd(endpoint: str, *args: str, cert: bool = True, foreign: dict | None = None) -> dict:
    argv = ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=5s", "--command-timeout=5s"]
    probe_ = {"kind": "etcdctl", "argv": argv}
    if endpoint.startswith("https"):
        argv.append(f"--cacert={TLS['ca']}")
        if foreign:
            argv += ["--cert=@cert", "--key=@key"]
            probe_.update(cert_pem=foreign["cert_pem"], key_pem=foreign["key_pem"])
        elif cert:
            argv += [f"--cert={TLS['cert']}", f"--key={TLS['key']}"]
    argv += list(args)
    return probe_


def test_etcd_refuses_clear_text_no_certificate_and_a_foreign_one(deployed, foreign):
    https, http = f"https://{ADDR[TARGET]}:{ETCD_PORT}", f"http://{ADDR[TARGET]}:{ETCD_PORT}"
    ok, plain, anonymous, alien = probe(CLIENT, [
        _etcd(https, "endpoint", "health"),
        _etcd(http, "endpoint", "health"),
        _etcd(https, "endpoint", "health", cert=False),
        _etcd(https, "endpoint", "health", foreign=foreign),
    ])
    assert ok["rc"] == 0 and "is healthy" in (ok["out"] + ok["err"]), ok
    for refused in (plain, anonymous, alien):
        assert refused["rc"] != 0 and "is healthy" not in refused["out"], refused


def test_a_process_without_etcd_credentials_cannot_take_the_leader_key(deployed):
    ns = DATA["patroni"]["namespace"].strip("/")
    key = f"/{ns}/{DATA['patroni']['scope']}/leader"
    local = f"https://127.0.0.1:{ETCD_PORT}"
    before, write, nobody, after = probe(TARGET, [
        _etcd(local, "get", "--print-value-only", key),
        # root on a member, but without a client certificate
        _etcd(local, "put", key, "intruder", cert=False),
        # another local user cannot even read the host's key
        {"kind": "etcdctl", "argv": ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                     "cat", TLS["key"]]},
        _etcd(local, "get", "--print-value-only", key),
    ])
    assert before["rc"] == 0 and before["out"] in DB_HOSTS, before
    assert write["rc"] != 0, write
    assert nobody["rc"] != 0 and "Permission denied" in nobody["err"], nobody
    assert after["rc"] == 0 and after["out"] in DB_HOSTS, after


def test_patroni_api_refuses_clear_text_and_unsafe_calls_without_credentials(deployed):
    https, http = f"https://{ADDR[TARGET]}:{API_PORT}", f"http://{ADDR[TARGET]}:{API_PORT}"
    ok, plain, anonymous, no_password = probe(CLIENT, [
        {"kind": "http", "url": f"{https}/patroni", "ca": TLS["ca"]},
        {"kind": "http", "url": f"{http}/patroni"},
        # unsafe calls: no client certificate, then a certificate from halite's CA but no password
        {"kind": "http", "url": f"{https}/restart", "ca": TLS["ca"], "method": "POST"},
        {"kind": "http", "url": f"{https}/restart", "ca": TLS["ca"], "method": "POST",
         "cert": TLS["cert"], "key": TLS["key"]},
    ])
    assert ok["status"] == 200 and '"state"' in ok["out"], ok
    # a TLS server answers a clear-text request with a closed connection or a 400, never the state
    assert plain["status"] != 200 and '"state"' not in plain["out"], plain
    assert anonymous["status"] == 403 and "certificate" in anonymous["out"], anonymous
    assert no_password["status"] == 401, no_password


# Runs on a host (or on the control machine): TARGETS is [[address, port], ...]; prints one
# JSON list of "open" (connected), "closed" (refused: nothing listens, the firewall let it
# through) or "filtered" (no answer: the firewall dropped it).
TCP = r'''
import concurrent.futures, json, socket
def one(target):
    s = socket.socket()
    s.settimeout(TIMEOUT)
    try:
        s.connect((target[0], target[1]))
        return "open"
    except ConnectionRefusedError:
        return "closed"
    except (socket.timeout, TimeoutError):
        return "filtered"
    except OSError as exc:
        return f"error {exc.errno}"
    finally:
        s.close()
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    print(json.dumps(list(pool.map(one, TARGETS))))
'''
TCP_TIMEOUT = 3


def _tcp(src: str, targets: list[list]) -> list[str]:
    return python_on(src, f"TIMEOUT = {TCP_TIMEOUT}\nTARGETS = {targets!r}\n{TCP}")


def test_the_firewall_matrix_holds_pair_by_pair(deployed):
    """Every host and the control machine try every port of the access table on every other
    host: an allowed pair connects, any other pair gets no answer (nftables drops it)."""
    pairs = view.firewall_matrix(DATA)
    by_src: dict[str, list[dict]] = {}
    for pair in pairs:
        by_src.setdefault(pair["src"], []).append(pair)
    seen = on_hosts(by_src, lambda src: _tcp(src, [[r["address"], r["port"]] for r in by_src[src]]))
    for src, rows in by_src.items():
        for row, verdict in zip(rows, seen[src]):
            row["seen"] = verdict
    _write_matrix(pairs)
    wrong = [f"{p['src']} -> {p['dst']} {p['address']}:{p['port']} ({p['service']}): "
             f"{'allowed' if p['allowed'] else 'not allowed'} but {p['seen']}"
             for p in pairs if (p["seen"] == "open") != p["allowed"] or p["seen"] not in ("open", "filtered")]
    assert not wrong, "\n".join(wrong)
    assert sum(p["allowed"] for p in pairs) > 0 and sum(not p["allowed"] for p in pairs) > 0


def _write_matrix(pairs: list[dict]) -> None:
    """docs/firewall-matrix.md: one line per source and destination, the ports that connected."""
    lines = ["# Firewall matrix, as tried in the lab",
             "",
             "Written by `tests/lab/test_70_security.py::test_the_firewall_matrix_holds_pair_by_pair` "
             "(part of `make test`). Every host and the control machine tried every port of the access "
             "table (`firewall.services` and SSH) on every other host's addresses on a network they "
             f"share ({TCP_TIMEOUT} s per try). **open**: it connected; every other port of the list got "
             "no answer (dropped by nftables). The test fails if any pair differs from the table "
             "(`halite.view.firewall_matrix`).",
             "",
             f"Ports tried: {', '.join(str(p) for p in sorted({p['port'] for p in pairs}))}.",
             "",
             "| from | to | address | open | expected open | other ports |",
             "|---|---|---|---|---|---|"]
    rows: dict[tuple, list[dict]] = {}
    for p in pairs:
        rows.setdefault((p["src"], p["dst"], p["address"]), []).append(p)
    for (src, dst, address), ps in rows.items():
        opened = ", ".join(f"{p['port']} {p['service']}" for p in ps if p["seen"] == "open") or "none"
        expected = ", ".join(str(p["port"]) for p in ps if p["allowed"]) or "none"
        other = sorted({p["seen"] for p in ps if p["seen"] != "open"})
        lines.append(f"| {src} | {dst} | {address} | {opened} | {expected} | {', '.join(other) or '-'} |")
    (REPO / "docs" / "firewall-matrix.md").write_text("\n".join(lines) + "\n")


# Runs on a host: SECRETS maps a name to [plain, base64] byte strings (as latin-1 text);
# prints {name: [where, ...]} for every place one of them is found: the journal (as
# journalctl prints it), log files, temporary folders and salt-ssh's thin directory.
LEAKS = r'''
import json, os, subprocess
found = {}
needles = {name: [v.encode("latin-1") for v in forms] for name, forms in SECRETS.items()}
def scan(where, data):
    for name, forms in needles.items():
        if any(f in data for f in forms):
            found.setdefault(name, []).append(where)
scan("journal", subprocess.run(["journalctl", "-o", "cat", "--no-pager", "-q"], capture_output=True).stdout)
for top in ("/var/log", "/var/tmp", "/tmp", "/root", "/var/spool/pgbackrest"):
    for root, dirs, files in os.walk(top):
        # the journal's own files (read above, decompressed) and salt-ssh's Python code
        dirs[:] = [d for d in dirs if d not in ("journal", "pyall", "py3")]
        for name in files:
            path = os.path.join(root, name)
            # salt-ssh's state tarball holds the last state run's pillar: every orchestration
            # wipes it at its end (checked on orch.deploy's output), lab tests re-create it
            if name == "salt_state.tgz" or not os.path.isfile(path) or os.path.getsize(path) > 200_000_000:
                continue
            try:
                with open(path, "rb") as fh:
                    scan(path, fh.read())
            except OSError:
                pass
print(json.dumps(found))
'''


def _secret_forms(data: dict) -> dict:
    import base64

    out = {}
    for key in view.SECRET_ROLES:
        value = view._get_or_none(data, key)
        if value:
            raw = value.encode("utf-8")
            out[key] = [raw.decode("latin-1"), base64.b64encode(raw).decode("latin-1")]
    return out


def test_no_secret_is_left_in_logs_journals_or_salt_ssh_remains(deployed):
    """Every generated secret, plain or base64: not in orch.deploy's output, not in any host's
    journal, logs or temporary folders (salt-ssh's thin directory included), not in the
    control machine's salt-ssh cache and logs. The last step of orch.deploy wiped salt-ssh."""
    forms = _secret_forms(DATA)
    assert len(forms) >= 10
    output = json.dumps(deployed, ensure_ascii=False).encode("utf-8")
    assert not [k for k, fs in forms.items() if any(f.encode("latin-1") in output for f in fs)]
    steps = {k.split("_|-")[1]: v for k, v in deployed["data"][next(iter(deployed["data"]))].items()}
    assert steps["deploy-wipe-salt-ssh"]["result"] is True, steps["deploy-wipe-salt-ssh"]
    leaks = {}
    program = f"SECRETS = {ascii(forms)}\n{LEAKS}"
    for host, found in on_hosts(TOPO["hosts"], lambda h: python_on(h, program, timeout=600)).items():
        for key, where in found.items():
            leaks[f"{host}: {key}"] = where[:5]
    for path in (REPO / ".salt-run").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for key, fs in forms.items():
                if any(f.encode("latin-1") in data for f in fs):
                    leaks.setdefault(f"control: {key}", []).append(str(path))
    assert not leaks, json.dumps(leaks, indent=1)
