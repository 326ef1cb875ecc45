"""halite.formats: every line it writes parses back, with the real reader, to
the exact password, for a set of nasty printable passwords.

The readers: libpq's conninfo parser (psycopg's ``conninfo_to_dict``) and
password file (``passfile``), PostgreSQL itself (SQL literals, logins, the
subscription's stored conninfo), PgBouncer 1.18 (its auth_file, with logins
through it), Salt's SCRAM verifier as postgres_user.present stores it, a POSIX
shell, and, for systemd's ``EnvironmentFile=`` (no systemd runs here), a
strict parser written from systemd's source (see :func:`systemd_env_file`).
"""
from __future__ import annotations

import base64
import json
import copy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from halite import config, formats, view

import psycopg
import pg_move  # tests/unit/conftest.py puts _modules on sys.path

PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT, PGB_PORT = 55451, 55452

#: Printable, and each hostile to at least one format; the last holds all of them.
NASTY = [
    "it's", 'say "hi"', "back\\slash", "trailing\\", "$HOME", "${HOME}", "a:b", "#not a comment", "with space",
    "100%s%%", "{{ pillar }}", "{% raw %}", "a;b", "`id`", "$(id)", "pässwörd–☃", " lead and trail ", "😀 astral",
    "''", '""', "=", "a=b c=d", "\\'", '\\" \\""',
    "all'\"\\$HOME:#; {{x}} %s `id` pässwörd–☃ 😀 ",
]


@pytest.mark.parametrize("password", NASTY)
def test_conninfo_parses_back_with_libpq(password):
    text = formats.conninfo(("host", "10.0.0.1"), ("port", 5432), ("user", "u"), ("password", password))
    assert conninfo_to_dict(text) == {"host": "10.0.0.1", "port": "5432", "user": "u", "password": password}


@pytest.mark.parametrize("password", NASTY)
def test_without_password_keeps_the_rest(password):
    text = formats.conninfo(("host", "h"), ("password", password), ("dbname", "car sale"))
    assert conninfo_to_dict(formats.without_password(text)) == {"host": "h", "dbname": "car sale"}
    assert "password=" not in formats.without_password(f"postgresql://u:{password}@h/db")


@pytest.mark.parametrize("password", NASTY)
def test_pg_move_takes_the_password_out_of_the_conninfo(password):
    """pg_move hands the password to psql in PGPASSWORD: it must find it, and keep the rest intact."""
    text = formats.conninfo(("host", "/var/run/postgresql"), ("dbname", "car sale"), ("password", password),
                            ("user", "legacy_move"))
    rest, found = pg_move._split_password(text)
    assert found == password
    assert conninfo_to_dict(rest) == {"host": "/var/run/postgresql", "dbname": "car sale", "user": "legacy_move"}


@pytest.mark.parametrize("text", [
    "host=h password=plain", "password = 'sp ace' host=h", "password=un\\ quoted\\'s host=h",
    "password='a\\\\b\\'c' host=h", "  host=h   password=''  ", "password=x'y host=h",
])
def test_pg_move_parses_conninfo_as_libpq_does(text):
    assert dict(pg_move._parse_conninfo(text)) == conninfo_to_dict(text)


def test_pg_move_leaves_what_is_not_a_conninfo_alone():
    assert pg_move._split_password("postgresql://u:p@h/db") == ("postgresql://u:p@h/db", None)
    assert pg_move._split_password("host=h password='unterminated") == ("host=h password='unterminated", None)


@pytest.mark.parametrize("password", NASTY)
def test_sql_literal_is_psycopgs_and_pg_moves(password):
    assert formats.sql_literal(password) == pg_move._lit(password)
    assert formats.sql_literal(password).startswith("E'" if "\\" in password else "'")


def parse_userlist(text: str) -> list[tuple[str, str]]:
    """PgBouncer's auth_file reader (src/loader.c, load_auth_file: find_quote and copy_quoted):
    two double-quoted fields per line, ``""`` inside a field is one ``"``."""
    out = []
    for line in text.splitlines():
        fields, pos = [], 0
        while len(fields) < 2:
            start = line.index('"', pos) + 1
            end = start
            while True:
                end = line.index('"', end)
                if line[end + 1:end + 2] == '"':
                    end += 2
                    continue
                break
            fields.append(line[start:end].replace('""', '"'))
            pos = end + 1
        out.append((fields[0], fields[1]))
    return out


@pytest.mark.parametrize("password", NASTY)
def test_userlist_line_parses_back(password):
    line = formats.pgbouncer_userlist_line('the "auth" user', password)
    assert line.endswith("\n") and line.count("\n") == 1
    assert parse_userlist(line) == [('the "auth" user', password)]


def parse_pgpass(line: str) -> list[str]:
    """libpq's password file rules (fe-connect.c, passwordFromFile): fields split at ":",
    a backslash takes the next character literally."""
    fields, cur, it = [], [], iter(line.rstrip("\n"))
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":" and len(fields) < 4:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return fields + ["".join(cur)]


@pytest.mark.parametrize("password", NASTY)
def test_pgpass_line_parses_back(password):
    line = formats.pgpass_line("db:host", 5432, "*", "us\\er", password)
    assert parse_pgpass(line) == ["db:host", "5432", "*", "us\\er", password]


def systemd_env_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile= reader, strictly as parse_env_file_internal in
    systemd's src/basic/env-file.c (v252 to main): comments start with # or ;
    before a key, keys and unquoted values are trimmed, '...' is literal, and in
    "..." a backslash is removed only before one of SHELL_NEED_ESCAPE (" \\ ` $);
    outside quotes a backslash takes the next character. No $VAR expansion
    (load_env_file, unlike merge_env_file, does not call replace_env)."""
    env, state, key, value, trail = {}, "pre_key", "", "", None
    for c in text + "\n":
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in " \t\n\r":
                state, key, value = "key", c, ""
        elif state == "key":
            if c in "\n\r":
                state = "pre_key"
            elif c == "=":
                state, trail = "pre_value", None
            else:
                key += c
        elif state in ("pre_value", "value"):
            if c in "\n\r":
                env[key.strip(" \t\n\r")] = value[:trail] if state == "value" and trail is not None else value
                state = "pre_key"
            elif c == "'" and state == "pre_value":
                state = "single"
            elif c == '"' and state == "pre_value":
                state = "double"
            elif c == "\\":
                state, trail = "value_escape", None
            elif state == "pre_value" and c in " \t":
                pass
            else:
                if c not in " \t":
                    trail = None
                elif trail is None:
                    trail = len(value)
                state, value = "value", value + c
        elif state == "value_escape":
            state, value = "value", value + c
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value += c
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value += c
        elif state == "double_escape":
            state = "double"
            value += c if c in '"\\`$' else "\\" + c
        elif state == "comment" and c in "\n\r":
            state = "pre_key"
    return env


def test_the_systemd_reader_here_reads_systemds_own_examples():
    assert systemd_env_file('# c\n; c\nA=1\nB = "two words" \nC=\'$x \\ y\'\nD=a\\ b  \nE="q\\"\\x\\$"\n') == {
        "A": "1", "B": "two words", "C": "$x \\ y", "D": "a b", "E": 'q"\\x$'}


@pytest.mark.parametrize("password", NASTY)
def test_systemd_env_line_parses_back(password, tmp_path):
    text = formats.systemd_env_line("HALITE_WEB_SECRET_KEY", password) + formats.systemd_env_line("OTHER", "x")
    assert systemd_env_file(text) == {"HALITE_WEB_SECRET_KEY": password, "OTHER": "x"}
    # and the same to a POSIX shell, which sources such files too
    env_file = tmp_path / "site.env"
    env_file.write_text(text, encoding="utf-8")
    res = subprocess.run(["sh", "-c", '. "$1" && printf %s "$HALITE_WEB_SECRET_KEY"', "sh", str(env_file)],
                         capture_output=True, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
    assert res.returncode == 0 and res.stdout.decode() == password


@pytest.mark.parametrize("password", NASTY)
def test_site_env_line_is_read_back_by_the_sites_rule(password):
    line = formats.site_env_line("HALITE_WEB_SECRET_KEY", password)
    key, value = line[:-1].split("=", 1)
    assert (key, value) == ("HALITE_WEB_SECRET_KEY", password)


@pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", "nul\x00", "bell\x07", "del\x7f", "ls\u2028"])
def test_line_formats_refuse_control_characters(bad):
    for write in (lambda v: formats.pgbouncer_userlist_line("u", v), lambda v: formats.pgpass_line("*", "*", "*", "u", v),
                  lambda v: formats.systemd_env_line("K", v), lambda v: formats.site_env_line("K", v)):
        with pytest.raises(ValueError):
            write(bad)


def salt_ssh_shim_config(minion_opts: dict) -> dict:
    """The minion config a salt-ssh (3008, salt-thin) target gets: YAML of the roster's minion_opts,
    embedded as ``OPTIONS.config = \"\"\"...\"\"\"`` in the Python shim (salt/client/ssh/__init__.py,
    Single._cmd_str), then read back as YAML on the target."""
    import salt.serializers.yaml

    shim = 'OPTIONS = {}\nOPTIONS["config"] = \\\n"""\n' + salt.serializers.yaml.serialize(minion_opts) + '\n"""\n'
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "invalid escape sequence": the mangling itself
        exec(compile(shim, "ssh_py_shim", "exec"), namespace)  # noqa: S102 - what the target does
    return yaml.safe_load(namespace["OPTIONS"]["config"])


def test_the_roster_hands_direct_calls_no_secret():
    """salt-ssh leaves minion_opts in its thin directory on the host: no password goes there
    (the patroni module reads it from patroni.yml)."""
    from halite import roster

    data = config.load()
    opts = roster.roster(data["topology"], data=data)["db-01"]["minion_opts"]
    restapi = salt_ssh_shim_config(opts)["halite"]["patroni"]["restapi"]
    assert restapi == {"port": 8008, "username": "patroni"}
    text = json.dumps(opts, ensure_ascii=False)
    for key in view.SECRET_ROLES:
        value = view._get_or_none(data, key)
        assert value is None or (value not in text and base64.b64encode(value.encode()).decode() not in text), key


def nasty_settings() -> dict:
    """The lab's description with a distinct nasty password everywhere."""
    data = config.load()
    combined = NASTY[-1]
    for i, user in enumerate(sorted(data["users"])):
        data["users"][user]["password"] = f"{user}{i} {combined}"
    data["patroni"]["restapi"]["password"] = f"api {combined}"
    data["web"]["secret_key"] = f"key {combined}"
    return data


def test_every_hosts_dsns_carry_the_exact_passwords():
    data = nasty_settings()
    users = data["users"]
    seen = set()
    for host in data["topology"]["hosts"]:
        dsn = config.pillar_for(host, data)["halite"]["host"]["dsn"]
        seen |= set(dsn)
        for key in ("legacy", "cluster_write", "cluster_read"):
            if key in dsn:  # the site's hosts
                parsed = conninfo_to_dict(dsn[key])
                assert parsed["password"] == users["app"]["password"] and parsed["user"] == users["app"]["username"]
        if "cluster_write" in dsn:
            # HAProxy on app-01 itself, dialled at 127.0.0.1 and verified as the cluster's service name (TLS)
            assert conninfo_to_dict(dsn["cluster_write"])["hostaddr"] == "127.0.0.1"
            assert conninfo_to_dict(dsn["cluster_write"])["host"] == "halite.halite.lab"
        if "move_source" in dsn:  # the db hosts
            assert conninfo_to_dict(dsn["move_source"])["password"] == users["legacy_move"]["password"]
            assert "password" not in conninfo_to_dict(dsn["move_target"])
    assert seen == {"legacy", "cluster_write", "cluster_read", "patroni_urls", "move_source", "move_target"}
    view = config.pillar_for("db-01", data)["halite"]["host"]
    # the auth_query user, and the exporters' login (a stats user: the topology has a monitoring host)
    assert parse_userlist(view["pgbouncer_userlist"]) == [
        (users["pgbouncer_auth"]["username"], users["pgbouncer_auth"]["password"]),
        (users["monitor"]["username"], users["monitor"]["password"])]


def with_plaintext(data: dict, *links: str) -> dict:
    out = copy.deepcopy(data)
    out["tls"]["unsafe_plaintext"] = list(links)
    return out


def test_server_options_verify_the_server_with_tls_and_are_plain_without():
    data = config.load()
    assert formats.server_options(data, "postgresql", "10.77.1.11", 5432) == [
        ("host", "10.77.1.11"), ("port", 5432), ("sslmode", "verify-full"), ("sslrootcert", "/etc/halite/tls/ca.crt")]
    assert formats.server_options(data, "pgbouncer", "10.77.0.20", 5000, name="halite.halite.lab", ca="/x/ca.crt") == [
        ("host", "halite.halite.lab"), ("hostaddr", "10.77.0.20"), ("port", 5000), ("sslmode", "verify-full"),
        ("sslrootcert", "/x/ca.crt")]
    # a link in unsafe_plaintext: host and port only, as before TLS (the name is not used)
    clear = with_plaintext(data, "postgresql", "pgbouncer")
    assert formats.server_options(clear, "postgresql", "10.77.1.11", 5432) == [("host", "10.77.1.11"), ("port", 5432)]
    assert formats.cluster_options(clear, "10.77.0.20", 5000) == [("host", "10.77.0.20"), ("port", 5000)]
    # each link decides alone: through HAProxy, PgBouncer's
    assert ("sslmode", "verify-full") in formats.cluster_options(with_plaintext(data, "postgresql"), "10.77.0.20", 5000)


def test_site_dsns_through_haproxy_follow_the_pgbouncer_link():
    data = nasty_settings()
    for links, want in (((), {"host": "halite.halite.lab", "hostaddr": "127.0.0.1", "sslmode": "verify-full",
                              "sslrootcert": "/etc/halite/tls/ca.crt"}),
                        (("pgbouncer",), {"host": "127.0.0.1"})):
        dsns = formats.web_dsns(with_plaintext(data, *links), "app-01")
        for key, port in (("cluster_write", data["haproxy"]["write_port"]), ("cluster_read", data["haproxy"]["read_port"])):
            parsed = conninfo_to_dict(dsns[key])
            assert parsed == {**want, "port": str(port), "dbname": data["users"]["app"]["database"],
                              "user": data["users"]["app"]["username"], "password": data["users"]["app"]["password"]}
        # the legacy server and the move's source are not under halite's TLS
        assert "sslmode" not in conninfo_to_dict(dsns["legacy"]) and "sslmode" not in conninfo_to_dict(dsns["move_source"])


def test_restore_points_service_verifies_the_members():
    data = config.load()
    backup = [h for h, e in data["topology"]["hosts"].items() if "backup" in (e.get("roles") or [])][0]
    for links, extra in (((), ["sslmode=verify-full", "sslrootcert=/etc/halite/tls/ca.crt"]), (("postgresql",), [])):
        lines = config.pillar_for(backup, with_plaintext(data, *links))["halite"]["host"]["restore_points_service"]
        assert lines[1:] == ["[halite-restore-points]", "host=10.77.1.11,10.77.1.12,10.77.1.13", "port=5432", *extra,
                             "dbname=carsale", "user=halite_backup", "connect_timeout=5", ""]


def test_json_is_a_yaml_scalar_for_every_password():
    """Salt's |json filter (ensure_ascii=False) in YAML files (patroni.yml, SLS): PyYAML reads it back."""
    import salt.utils.json
    for password in NASTY:
        assert yaml.safe_load("password: " + salt.utils.json.dumps(password)) == {"password": password}


# --------------------------------------------------------------------------
# against the real programs: a throwaway PostgreSQL 15 (scram-sha-256) and PgBouncer


def as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


ROLES = {f"nasty_{i}": password for i, password in enumerate(NASTY)}


@pytest.fixture(scope="module")
def server():
    """127.0.0.1:PG_PORT, every ROLES role with its password (scram); the socket trusts postgres."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server binaries ({PG_BIN}) not found")
    if port_busy(PG_PORT):
        pytest.fail(f"port {PG_PORT} is already in use (a stale test server?)")
    base = Path(tempfile.mkdtemp(prefix="halite-formats-", dir="/tmp"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = base / "data"
    try:
        as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
        with open(data / "postgresql.conf", "a") as fh:
            fh.write(f"\nlisten_addresses = '127.0.0.1'\nport = {PG_PORT}\nunix_socket_directories = '{base}'\n"
                     "fsync = off\nwal_level = logical\nmax_connections = 60\nshared_buffers = 32MB\n")
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "-t", "30", "start")
        with psycopg.connect(host=str(base), port=PG_PORT, user="postgres", dbname="postgres", autocommit=True) as conn:
            for role, password in ROLES.items():
                # hashed by the server, as Patroni creates its users
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)))
        yield base
    finally:
        subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                       + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def admin(base: Path):
    return psycopg.connect(host=str(base), port=PG_PORT, user="postgres", dbname="postgres", autocommit=True)


@pytest.mark.parametrize("role", ROLES)
def test_login_with_the_conninfo(server, role):
    text = formats.conninfo(("host", "127.0.0.1"), ("port", PG_PORT), ("dbname", "postgres"), ("user", role),
                            ("password", ROLES[role]), ("connect_timeout", 5))
    with psycopg.connect(text) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
    wrong = formats.conninfo(("host", "127.0.0.1"), ("port", PG_PORT), ("dbname", "postgres"), ("user", role),
                             ("password", ROLES[role] + "x"), ("connect_timeout", 5))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_login_with_the_pgpass_line(server, role, tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text(formats.pgpass_line("127.0.0.1", PG_PORT, "*", role, ROLES[role]), encoding="utf-8")
    passfile.chmod(0o600)
    with psycopg.connect(host="127.0.0.1", port=PG_PORT, dbname="postgres", user=role, passfile=str(passfile),
                         connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role


def test_login_through_pg_moves_psql(server):
    """pg_move runs psql with the password in PGPASSWORD: every role logs in."""
    for role, password in ROLES.items():
        text = formats.conninfo(("host", "127.0.0.1"), ("port", PG_PORT), ("dbname", "postgres"), ("user", role),
                                ("password", password))
        assert pg_move._psql(text, "SELECT current_user;", "test", "source").strip() == role


def test_sql_literals_read_back_by_postgresql(server):
    with admin(server) as conn:
        for scs in ("on", "off"):
            conn.execute(f"SET standard_conforming_strings = {scs}")
            conn.execute("SET escape_string_warning = off")
            for password in NASTY:
                assert conn.execute(f"SELECT {formats.sql_literal(password)}").fetchone()[0] == password


def test_the_subscription_connects_with_the_conninfo_pg_move_writes(server):
    """CREATE SUBSCRIPTION ... CONNECTION <literal of a conninfo>: PostgreSQL connects with it (a wrong
    password would fail the statement) and stores it unchanged."""
    with admin(server) as conn:
        conn.execute("CREATE DATABASE pub")
        conn.execute("CREATE DATABASE sub")
    with psycopg.connect(host=str(server), port=PG_PORT, user="postgres", dbname="pub", autocommit=True) as conn:
        conn.execute("CREATE PUBLICATION halite_test FOR ALL TABLES")
    role = f"nasty_{len(NASTY) - 1}"
    text = formats.conninfo(("host", "127.0.0.1"), ("port", PG_PORT), ("dbname", "pub"), ("user", role),
                            ("password", ROLES[role]))
    with psycopg.connect(host=str(server), port=PG_PORT, user="postgres", dbname="sub", autocommit=True) as conn:
        conn.execute(f"CREATE SUBSCRIPTION halite_test CONNECTION {pg_move._lit(text)} PUBLICATION halite_test "
                     "WITH (create_slot = false, enabled = false, copy_data = false, slot_name = NONE)")
        stored = conn.execute("SELECT subconninfo FROM pg_subscription WHERE subname = 'halite_test'").fetchone()[0]
        conn.execute("DROP SUBSCRIPTION halite_test")
    assert stored == text and conninfo_to_dict(stored)["password"] == ROLES[role]


#: Code points unassigned in Unicode 3.2 (an emoji): Salt's SASLprep refuses them, see below.
SALT_REFUSES = {p for p in NASTY if "😀" in p}


def test_salts_scram_verifier_takes_the_same_logins(server):
    """postgres_user.present hashes the password itself (salt.modules.postgres._scram_sha_256, with
    SASLprep) and sends the verifier: libpq logs in against it with the plain password.

    Salt's SASLprep (salt/ext/saslprep.py) raises on code points unassigned in
    Unicode 3.2, where PostgreSQL and libpq fall back to the raw password: such a
    password (an emoji) stops the users states with that error (loud, nothing
    half-set). The roles Patroni creates (superuser, replication, rewind) are
    hashed by the server and take them."""
    from salt.modules import postgres as salt_postgres

    with admin(server) as conn:
        for role, password in ROLES.items():
            if password in SALT_REFUSES:
                with pytest.raises(ValueError, match="SASLprep"):
                    salt_postgres._scram_sha_256(password)
                continue
            verifier = salt_postgres._scram_sha_256(password)
            conn.execute(f"ALTER ROLE \"{role}\" PASSWORD {formats.sql_literal(verifier)}")
            assert salt_postgres._verify_password(role, password, verifier, "scram-sha-256")
    for role, password in ROLES.items():
        with psycopg.connect(host="127.0.0.1", port=PG_PORT, dbname="postgres", user=role, password=password,
                             connect_timeout=5):
            pass


@pytest.fixture(scope="module")
def pgbouncer(server):
    """PgBouncer on 127.0.0.1:PGB_PORT: auth_file with every ROLES line (halite.formats), scram-sha-256,
    and auth_user nasty_0 looking other users up with auth_query (as on the db hosts)."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not binary:
        pytest.skip("pgbouncer is not installed here (apt-get install pgbouncer)")
    if port_busy(PGB_PORT):
        pytest.fail(f"port {PGB_PORT} is already in use")
    with admin(server) as conn:
        conn.execute('ALTER ROLE "nasty_0" SUPERUSER')
        conn.execute(sql.SQL("CREATE ROLE via_query LOGIN PASSWORD {}").format(sql.Literal(NASTY[-1] + " (auth_query)")))
    auth_file = server / "userlist.txt"
    # the first role's line is the auth user's; the others log in from the file too
    auth_file.write_text("".join(formats.pgbouncer_userlist_line(r, p) for r, p in ROLES.items()), encoding="utf-8")
    ini = server / "pgbouncer.ini"
    ini.write_text(f"""[databases]
* = host=127.0.0.1 port={PG_PORT}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {PGB_PORT}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {auth_file}
auth_user = nasty_0
auth_query = SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1
pool_mode = transaction
logfile = {server}/pgbouncer.log
pidfile = {server}/pgbouncer.pid
""")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (auth_file, ini):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    cmd = ([binary, str(ini)] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", binary, str(ini)])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_busy(PGB_PORT):
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"pgbouncer did not start: {(server / 'pgbouncer.log').read_text(errors='replace')[-2000:]}"
            time.sleep(0.1)
        yield PGB_PORT
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("role", [*ROLES, "via_query"])
def test_login_through_pgbouncer(pgbouncer, role):
    password = ROLES.get(role, NASTY[-1] + " (auth_query)")
    with psycopg.connect(host="127.0.0.1", port=pgbouncer, dbname="postgres", user=role, password=password,
                         connect_timeout=5, prepare_threshold=None) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=pgbouncer, dbname="postgres", user=role, password=password + "x",
                        connect_timeout=5)


def test_the_status_page_asks_patroni_over_https_unless_the_pillar_says_otherwise():
    data = config.load()
    assert formats.web_dsns(data, "app-01")["patroni_urls"] == \
        "https://10.77.1.11:8008,https://10.77.1.12:8008,https://10.77.1.13:8008"
    data["tls"]["unsafe_plaintext"] = ["patroni_api"]
    assert formats.web_dsns(data, "app-01")["patroni_urls"] == \
        "http://10.77.1.11:8008,http://10.77.1.12:8008,http://10.77.1.13:8008"


def haproxy_words(line: str) -> list[str]:
    """HAProxy's splitting of a configuration line, as its manual ("Quoting and escaping")
    describes it: a space ends a word, ``#`` outside quotes starts a comment, text
    between single quotes is taken as it is, a backslash outside quotes makes the next
    character literal, and parts side by side make one word. (No haproxy binary here;
    double quotes are left out: :func:`formats.haproxy_word` does not write them.)"""
    words, cur, i, in_word = [], "", 0, False
    while i < len(line):
        c = line[i]
        if c == "'":
            end = line.index("'", i + 1)
            cur, i, in_word = cur + line[i + 1:end], end + 1, True
        elif c == "\\":
            cur, i, in_word = cur + line[i + 1], i + 2, True
        elif c == "#":
            break
        elif c in " \t":
            if in_word:
                words.append(cur)
            cur, i, in_word = "", i + 1, False
        else:
            cur, i, in_word = cur + c, i + 1, True
    if in_word:
        words.append(cur)
    return words


@pytest.mark.parametrize("password", NASTY)
def test_haproxy_word_reads_back_as_one_word(password):
    line = f"    stats auth {formats.haproxy_word('halite:' + password)}  # a comment"
    assert haproxy_words(line) == ["stats", "auth", "halite:" + password]
    assert "${" not in formats.haproxy_word("${HOME}").replace("'${HOME}'", "")  # quoted: no expansion


def test_haproxy_word_refuses_line_breaks():
    with pytest.raises(ValueError, match="control character"):
        formats.haproxy_word("a\nb")
