"""TLS on PostgreSQL and PgBouncer against the real servers (PostgreSQL 15 and PgBouncer as on
the db hosts), with the settings halite writes (halite.view.postgresql_tls, pgbouncer_tls and
the hostssl lines of pg_hba) and a db host's certificate from halite.pki:

- libpq with ``sslmode=verify-full`` (halite.formats.server_options) connects over TLS, to
  PostgreSQL by its address and to PgBouncer by the cluster's service name at ``hostaddr``,
  as the site does through HAProxy (TCP passthrough);
- a clear-text connection finds no pg_hba line (hostssl only) and PgBouncer refuses it;
- a client refuses a server whose certificate another CA issued, or that does not name the
  host it dialled;
- PgBouncer reaches PostgreSQL over TLS, verifying its certificate (``server_tls_sslmode =
  verify-full``) for the address it dials.

Throwaway servers on free loopback ports, as tests/unit/test_pgbackrest_real.py starts them;
skipped where the PostgreSQL 15 binaries or PgBouncer are missing.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from halite import config, formats, pki, view

PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: PostgreSQL and PgBouncer run as postgres when the tests run as root.
RUNAS = "postgres" if os.geteuid() == 0 else None
DATA = config.load()
APP = {"user": "carsale", "password": "app 'pw' \\ ok"}


def as_runas(*cmd: str) -> list[str]:
    return ["runuser", "-u", RUNAS, "--", *cmd] if RUNAS else list(cmd)


def run(*cmd: str) -> None:
    res = subprocess.run(as_runas(*cmd), capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr or res.stdout}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def give(path: Path, mode: int) -> None:
    """``path`` to the server's user, with ``mode``."""
    if RUNAS:
        pw = pwd.getpwnam(RUNAS)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)


def local(paths: dict, value: str) -> str:
    """A value of halite's settings with the hosts' TLS paths replaced by this test's files."""
    return paths.get(value, value)


@pytest.fixture(scope="module")
def cluster():
    """PostgreSQL (TLS, hostssl-only pg_hba for 127.0.0.1) and PgBouncer in front of it:
    ``{"pg": port, "pgb": port, "ca": path, "other_ca": path}``."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not (PG_BIN / "initdb").exists() or not binary:
        pytest.skip(f"the PostgreSQL 15 server binaries ({PG_BIN}) or pgbouncer not found")
    base = Path(tempfile.mkdtemp(prefix="halite-tls-pg-"))
    give(base, 0o700)
    # db-01's certificate, with the names halite gives it (its address, the service name, 127.0.0.1)
    names, addresses = view.cert_names(DATA, "db-01")
    pki.ensure_ca(base / "pki", "halite-test")
    cert, key = pki.host_cert(base / "pki", "db-01", names, addresses)
    # the same names, issued by another CA
    pki.ensure_ca(base / "other", "another-ca")
    pki.host_cert(base / "other", "db-01", names, addresses)
    files = {"ca": base / "ca.crt", "cert": base / "host.crt", "key": base / "postgres.key"}
    files["ca"].write_text((base / "pki" / "ca.crt").read_text())
    files["cert"].write_text(cert)
    files["key"].write_text(key)
    for name, path in files.items():
        give(path, 0o600 if name == "key" else 0o644)
    paths = {view.TLS_PATHS["ca"]: str(files["ca"]), view.TLS_PATHS["cert"]: str(files["cert"]),
             view.TLS_PATHS["keys"]["postgres"]: str(files["key"])}
    pg_port, pgb_port = free_port(), free_port()
    data = base / "data"
    pgbouncer = None
    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync")
        params = {k: local(paths, v) for k, v in view.postgresql_tls(DATA)["parameters"].items()}
        assert params["ssl"] == "on"
        with open(data / "postgresql.conf", "a") as fh:
            fh.write(f"\nlisten_addresses = '127.0.0.1'\nport = {pg_port}\nunix_socket_directories = '{base}'\n"
                     "fsync = off\nshared_buffers = 16MB\n")
            fh.write("".join(f"{k} = '{v}'\n" for k, v in params.items()))
        # halite's hostssl line for the app host's address, here for the loopback: nothing else over TCP
        line = next(h for h in view.pg_hba(DATA) if h.startswith("hostssl all carsale,") and "10.77.1.20/32" in h)
        (data / "pg_hba.conf").write_text(f"local all postgres trust\n{line.replace('10.77.1.20/32', '127.0.0.1/32')}\n")
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "postgresql.log"), "-w", "-t", "30", "start")
        with psycopg.connect(host=str(base), port=pg_port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute("SET password_encryption = 'scram-sha-256'")
            c.execute(f"CREATE ROLE carsale LOGIN PASSWORD {formats.sql_literal(APP['password'])}")
            c.execute("CREATE DATABASE carsale OWNER carsale")
        userlist = base / "userlist.txt"
        userlist.write_text(formats.pgbouncer_userlist_line(APP["user"], APP["password"]))
        give(userlist, 0o600)
        tls = "".join(f"{k} = {local(paths, v)}\n" for k, v in view.pgbouncer_tls(DATA))
        ini = base / "pgbouncer.ini"
        # as on the db hosts: PgBouncer dials PostgreSQL's address, which its certificate names
        ini.write_text(f"[databases]\n* = host=127.0.0.1 port={pg_port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
                       f"listen_port = {pgb_port}\nunix_socket_dir =\nauth_type = scram-sha-256\n"
                       f"auth_file = {userlist}\npool_mode = transaction\nlogfile = {base}/pgbouncer.log\n"
                       f"pidfile = {base}/pgbouncer.pid\n{tls}")
        give(ini, 0o600)
        pgbouncer = subprocess.Popen(as_runas(binary, str(ini)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not port_open(pgb_port):
            assert pgbouncer.poll() is None and time.monotonic() < deadline, \
                f"pgbouncer did not start: {(base / 'pgbouncer.log').read_text(errors='replace')[-2000:]}"
            time.sleep(0.1)
        yield {"pg": pg_port, "pgb": pgb_port, "ca": files["ca"], "other_ca": base / "other" / "ca.crt"}
    finally:
        if pgbouncer is not None:
            pgbouncer.terminate()
            pgbouncer.wait(timeout=10)
        stop_postgres(data)
        shutil.rmtree(base, ignore_errors=True)


def stop_postgres(data: Path) -> None:
    """Stop the server this module started (its postmaster.pid), immediate shutdown."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    os.kill(pid, signal.SIGQUIT)
    for _ in range(200):
        if not (data / "postmaster.pid").exists():
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def connect(options: list[tuple[str, object]], **extra) -> psycopg.Connection:
    dsn = formats.conninfo(*options, ("dbname", "carsale"), ("user", APP["user"]), ("password", APP["password"]),
                           ("connect_timeout", 5), *extra.items())
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def test_verify_full_reaches_postgresql_by_its_address_over_tls(cluster):
    options = formats.server_options(DATA, "postgresql", "127.0.0.1", cluster["pg"], ca=cluster["ca"])
    assert ("sslmode", "verify-full") in options
    with connect(options) as conn:
        ssl, version = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert ssl and version in ("TLSv1.2", "TLSv1.3")


def test_verify_full_reaches_pgbouncer_as_the_service_name(cluster):
    """The site's options through HAProxy (formats.cluster_options): host=<service name>, hostaddr."""
    options = formats.cluster_options(DATA, "127.0.0.1", cluster["pgb"], ca=cluster["ca"])
    assert dict(options)["host"] == view.service_name(DATA) and dict(options)["hostaddr"] == "127.0.0.1"
    with connect(options) as conn:
        # and PgBouncer's own connection to PostgreSQL is TLS (hostssl only would refuse it otherwise)
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True


def test_clear_text_finds_no_pg_hba_line(cluster):
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect([("host", "127.0.0.1"), ("port", cluster["pg"])], sslmode="disable")


def test_pgbouncer_refuses_clear_text(cluster):
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        connect([("host", "127.0.0.1"), ("port", cluster["pgb"])], sslmode="disable")


@pytest.mark.parametrize("port", ["pg", "pgb"])
def test_a_certificate_from_another_ca_is_refused(cluster, port):
    options = formats.server_options(DATA, "postgresql", "127.0.0.1", cluster[port], ca=cluster["other_ca"])
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(options)


def test_a_certificate_for_another_name_is_refused(cluster):
    options = formats.server_options(DATA, "pgbouncer", "127.0.0.1", cluster["pgb"], name="not-the-cluster.example",
                                     ca=cluster["ca"])
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(options)
