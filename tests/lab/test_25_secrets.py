"""Every lab password logs in, over the network path it is used on.

The lab's passwords and the site's key are generated per install in the nasty
style (``secrets.style: nasty`` in pillar/lab.yaml, halite.generated): each holds
quotes, $, :, a backslash, spaces, #, template and shell syntax and non-ASCII, so a value escaped wrong
anywhere on its way (pillar, YAML, PgBouncer's userlist, libpq conninfo,
.pgpass, SQL, site.env) fails a login here. Each login is also tried with the
password plus one character, which must fail: the server really checks it.

Commands on the hosts get no secret on their command line: a fixed Python
program is sent to ``python3 -`` on the host through ``halite lab ssh``'s stdin,
with the checks (argv, environment, a .pgpass text) as a Python literal in it;
psql gets its password from PGPASSWORD or a 0600 PGPASSFILE.
"""
from __future__ import annotations

import http.cookies
import json
import re
import string
import urllib.error
import urllib.request

import psycopg
import pytest

from halite import config, formats, lab as labmod, view
from labkit import python_on

pytestmark = pytest.mark.lab
DATA = config.load()
TOPO = DATA["topology"]
USERS = DATA["users"]
DB_HOSTS = config.hosts_with_role(TOPO, "db")
APP_HOST = config.hosts_with_role(TOPO, "app")[0]
LEGACY_HOST = config.hosts_with_role(TOPO, "legacy_db")[0]
PROXY = config.hosts_with_role(TOPO, "haproxy")[0]
PROXY_EDGE = TOPO["hosts"][PROXY]["addresses"]["edge"]
ADDR = {h: config.cluster_address(TOPO, h) for h in TOPO["hosts"]}
PG_PORT, PGB_PORT = DATA["postgresql"]["port"], DATA["pgbouncer"]["port"]
API = DATA["patroni"]["restapi"]

# Runs on the host: each check is {"argv", "env", optional "pgpass"}; prints one JSON list.
REMOTE = r'''
import json, os, subprocess, tempfile
results = []
for check in CHECKS:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(check.get("env", {}))
    passfile = None
    if "pgpass" in check:
        fd, passfile = tempfile.mkstemp(prefix="halite-test-pgpass-")  # 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(check["pgpass"])
        env["PGPASSFILE"] = passfile
    try:
        res = subprocess.run(check["argv"], env=env, capture_output=True, text=True, timeout=30)
        results.append({"rc": res.returncode, "out": res.stdout.strip(), "err": res.stderr.strip()[-500:]})
    except Exception as exc:
        results.append({"rc": -1, "out": "", "err": repr(exc)})
    finally:
        if passfile:
            os.unlink(passfile)
print(json.dumps(results))
'''

# One HTTP request with Basic auth from the environment; prints the status code.
HTTP = r'''
import base64, os, ssl, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=b"")
token = base64.b64encode((os.environ["API_USER"] + ":" + os.environ["API_PASSWORD"]).encode("utf-8")).decode()
req.add_header("Authorization", "Basic " + token)
# Patroni verifies its clients (verify_client: optional asks unsafe calls for a certificate)
context = ssl.create_default_context(cafile=sys.argv[3])
context.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        print(resp.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
'''


def on_host(host: str, checks: list[dict]) -> list[dict]:
    """Run ``checks`` on ``host``; the secrets travel in the program on stdin, never in argv."""
    # a Python literal, pure ASCII whatever the locale
    results = python_on(host, f"CHECKS = {ascii(checks)}\n{REMOTE}")
    assert len(results) == len(checks)
    return results


def psql(conninfo: str, sql: str, password: str, pgpass: str | None = None) -> dict:
    """A psql check: the password in PGPASSWORD, or (``pgpass``) in a password file only."""
    check = {"argv": ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
             "env": {"PGCONNECT_TIMEOUT": "10"}}
    if pgpass is None:
        check["env"]["PGPASSWORD"] = password
    else:
        check["pgpass"] = pgpass
    return check


def logs_in(host: str, conninfo: str, sql: str, password: str, expect: str, pgpass_for: tuple | None = None) -> None:
    """``sql`` through ``conninfo`` on ``host`` answers ``expect`` with ``password``, and fails with a wrong one."""
    if pgpass_for:
        checks = [psql(conninfo, sql, password, formats.pgpass_line(*pgpass_for, password)),
                  psql(conninfo, sql, password, formats.pgpass_line(*pgpass_for, password + "x"))]
    else:
        checks = [psql(conninfo, sql, password), psql(conninfo, sql, password + "x")]
    right, wrong = on_host(host, checks)
    assert right["rc"] == 0, f"{host} -> {conninfo}: {right['err']}"
    assert expect in right["out"], right
    # PostgreSQL says "password authentication failed", PgBouncer "SASL authentication failed"
    assert wrong["rc"] != 0 and "authentication failed" in wrong["err"], wrong


def test_the_lab_passwords_are_nasty():
    # generated per install (none in git), in the lab's nasty style; but the exporters' login:
    # plain (the postgres exporter 0.11 refuses a quote or backslash in it, halite.view.GENERATED_SECRETS)
    monitor = USERS["monitor"]["password"]
    assert len(monitor) >= 32 and set(monitor) <= set(string.ascii_letters + string.digits + "-_"), monitor
    secrets = [u["password"] for k, u in USERS.items() if k != "monitor"] + [API["password"], DATA["web"]["secret_key"]]
    assert len(set(secrets + [monitor])) == len(secrets) + 1
    for secret in secrets:
        assert secret.isprintable(), secret
        assert all(c in secret for c in "'\"$:\\ #"), secret
    # non-ASCII everywhere but Patroni's REST API password (printable ASCII: Patroni's client encodes latin-1)
    assert [s for s in secrets if s.isascii()] == [API["password"]]


def test_superuser_and_rewind_log_in_from_another_db_host(deployed):
    target, client = DB_HOSTS[0], DB_HOSTS[1]
    for key in ("superuser", "rewind"):
        user = USERS[key]
        conninfo = formats.conninfo(*formats.server_options(DATA, "postgresql", ADDR[target], PG_PORT),
                                    ("dbname", "postgres"), ("user", user["username"]))
        logs_in(client, conninfo, "SELECT current_user", user["password"], user["username"])


def test_replication_connects_with_a_pgpass_file(deployed):
    target, client = DB_HOSTS[0], DB_HOSTS[1]
    user = USERS["replication"]
    conninfo = formats.conninfo(*formats.server_options(DATA, "postgresql", ADDR[target], PG_PORT),
                                ("user", user["username"]), ("replication", "true"))
    # IDENTIFY_SYSTEM answers systemid|timeline|xlogpos|dbname
    logs_in(client, conninfo, "IDENTIFY_SYSTEM", user["password"], "|",
            pgpass_for=(ADDR[target], PG_PORT, "*", user["username"]))


def test_pgbouncer_auth_user_logs_in_to_pgbouncer_and_postgresql(deployed):
    """Its password on PgBouncer's side is the userlist line; on PostgreSQL's, the role Salt set."""
    target, client = DB_HOSTS[0], DB_HOSTS[1]
    user = USERS["pgbouncer_auth"]
    console = formats.conninfo(*formats.server_options(DATA, "pgbouncer", ADDR[target], PGB_PORT),
                               ("dbname", "pgbouncer"), ("user", user["username"]))
    logs_in(client, console, "SHOW VERSION", user["password"], "PgBouncer")
    direct = formats.conninfo(*formats.server_options(DATA, "postgresql", ADDR[target], PG_PORT),
                              ("dbname", USERS["app"]["database"]), ("user", user["username"]))
    logs_in(client, direct, "SELECT current_user", user["password"], user["username"])


@pytest.mark.skipif(not all(view.tls_on(DATA)[link] for link in ("postgresql", "pgbouncer")),
                    reason="a link in tls.unsafe_plaintext")
@pytest.mark.parametrize("db_host", DB_HOSTS)
def test_app_logs_in_through_each_pgbouncer(deployed, db_host):
    """auth_query: PgBouncer logs in as pgbouncer_auth (userlist) to look the app's verifier up."""
    app = USERS["app"]
    conninfo = formats.conninfo(*formats.server_options(DATA, "pgbouncer", ADDR[db_host], PGB_PORT),
                                ("dbname", app["database"]), ("user", app["username"]))
    logs_in(APP_HOST, conninfo, "SELECT current_user", app["password"], app["username"])


@pytest.mark.parametrize("port", [DATA["haproxy"]["write_port"], DATA["haproxy"]["read_port"]])
def test_app_logs_in_through_haproxy(deployed, port):
    """From the control machine, the password inside a libpq conninfo (halite.formats.conninfo)."""
    app = USERS["app"]

    def dsn(password: str) -> str:
        return formats.conninfo(*formats.cluster_options(DATA, PROXY_EDGE, port, ca=view.control_ca(DATA)),
                                ("dbname", app["database"]), ("user", app["username"]), ("password", password),
                                ("connect_timeout", 10))

    with psycopg.connect(dsn(app["password"]), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == app["username"]
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(dsn(app["password"] + "x"))


def test_legacy_move_reaches_the_legacy_server_from_a_db_host(deployed):
    mover = USERS["legacy_move"]
    conninfo = formats.conninfo(("host", ADDR[LEGACY_HOST]), ("port", DATA["legacy"]["port"]),
                                ("dbname", USERS["app"]["database"]), ("user", mover["username"]))
    logs_in(DB_HOSTS[0], conninfo, "SELECT current_user", mover["password"], mover["username"])


def test_patroni_api_takes_its_password_and_refuses_a_wrong_one(deployed):
    """POST /reload (re-read an unchanged patroni.yml) needs the REST API's Basic auth: 202, else 401."""
    url = f"https://{ADDR[DB_HOSTS[0]]}:{API['port']}/reload"
    tls = view.TLS_PATHS

    def request(password: str) -> dict:
        return {"argv": ["python3", "-c", HTTP, url, "POST", tls["ca"], tls["cert"], tls["key"]],
                "env": {"API_USER": API["username"], "API_PASSWORD": password}}

    right, wrong = on_host(APP_HOST, [request(API["password"]), request(API["password"] + "x")])
    assert right["rc"] == 0 and right["out"] == "202", right
    assert wrong["rc"] == 0 and wrong["out"] == "401", wrong


def test_site_answers_and_signs_its_session_with_the_exact_key(deployed):
    """The site's session cookie verifies with web.secret_key as written in the pillar (spaces at
    both ends included), and not with the key trimmed."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import BadSignature

    url = labmod.site_url()
    tls = view.site_ssl_context(DATA)  # halite's CA (None: plain HTTP)
    with urllib.request.urlopen(url, timeout=15, context=tls) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(url + "api/cars?per_page=1", timeout=15, context=tls) as resp:
        car = json.loads(resp.read())["cars"][0]["id"]
    with urllib.request.urlopen(f"{url}cars/{car}", timeout=15, context=tls) as resp:
        assert resp.status == 200
        page = resp.read().decode()
        cookies = http.cookies.SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def serializer(key: str):
        app = Flask("halite-test")
        app.secret_key = key
        return SecureCookieSessionInterface().get_signing_serializer(app)

    key = DATA["web"]["secret_key"]
    assert serializer(key).loads(cookies["session"].value)["csrf"] == token
    assert key != key.strip()
    with pytest.raises(BadSignature):
        serializer(key.strip()).loads(cookies["session"].value)
