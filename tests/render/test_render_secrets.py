"""Every file and state argument a secret reaches, rendered for every host with
nasty passwords (quotes, $, :, backslash, spaces, #, %, Jinja braces, ;,
backticks, non-ASCII and an emoji), read back with the reader that reads it on
the host: the exact password each time, and none in a shell command.

salt-call --local as each host (tests/render/rendering.py), with a
HALITE_SETTINGS file holding the passwords; file templates rendered with the
context their state passes, as file.managed does."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

import rendering
from rendering import arg
from halite import config

HOSTS = list(config.load()["topology"]["hosts"])
HARD = "'\"\\ $HOME ${PATH} $(id) `id` : # ; % {{ grains.id }} {% raw %} pässwörd–☃ 😀 "
USERS = ["superuser", "replication", "rewind", "pgbouncer_auth", "app", "legacy_move"]
SECRETS = {
    "users": {**{u: {"password": f" {u}:{HARD}{i}\\ "} for i, u in enumerate(USERS)},
              # no space at either end, no quote, no backslash (the model refuses them: the postgres
              # exporter trims its password file and refuses its own DSN with a ' or a \\)
              "monitor": {"password": "monitor:" + "".join(c for c in HARD.strip() if c not in "'\\") + "x"}},
    # Patroni's REST API password is printable ASCII (the model refuses more: Patroni's client encodes latin-1)
    "patroni": {"restapi": {"password": "api " + "".join(c for c in HARD if c.isascii())}},
    "web": {"secret_key": f" key#{HARD}"},
}
PASSWORDS = {u: SECRETS["users"][u]["password"] for u in [*USERS, "monitor"]}
API_PASSWORD = SECRETS["patroni"]["restapi"]["password"]
SECRET_KEY = SECRETS["web"]["secret_key"]
ALL = [*PASSWORDS.values(), API_PASSWORD, SECRET_KEY]
TO_CLUSTER = json.dumps({"halite": {"web": {"database_target": "cluster"}}})


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-secrets")


@pytest.fixture(scope="module")
def settings(tmp) -> Path:
    path = tmp / "secrets.yaml"
    path.write_text(yaml.safe_dump(SECRETS, allow_unicode=True), encoding="utf-8")
    return path


def call(tmp: Path, settings: Path, host: str, *args: str):
    return rendering.answer(tmp, host, *args, settings=settings)


def template(tmp: Path, settings: Path, host: str, source: str, **context) -> str:
    """A file template rendered as the host, with the context its state passes."""
    return rendering.render_template(tmp, host, source, settings=settings, **context)


@pytest.fixture(scope="module")
def highstates(tmp, settings) -> dict:
    return {host: call(tmp, settings, host, "state.show_highstate") for host in HOSTS}


def test_the_passwords_are_nasty():
    assert len(set(ALL)) == len(ALL)
    for password in ALL:
        assert password.isprintable()
        # the exporters' login may hold no quote and no backslash (the model refuses them)
        nasty = "\"$: #" if password == PASSWORDS["monitor"] else "'\"$:\\ #"
        assert all(c in password for c in nasty), password
    # every one non-ASCII but Patroni's REST API password (printable ASCII by the model's rule)
    assert [p for p in ALL if p.isascii()] == [API_PASSWORD]


def shell_strings(states: dict):
    """(state id, argument, text) of every shell command in the states: cmd.* names, unless, onlyif."""
    for sid, body in states.items():
        for mod, items in body.items():
            if mod.startswith("__"):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                for key in ("name", "unless", "onlyif", "creates"):
                    if key in item and (mod == "cmd" or key != "name"):
                        for text in item[key] if isinstance(item[key], list) else [item[key]]:
                            yield sid, key, json.dumps(text, ensure_ascii=False)


@pytest.mark.parametrize("host", HOSTS)
def test_no_secret_in_a_shell_command(tmp, settings, highstates, host):
    sets = [highstates[host]]
    if host == "app-01":
        sets += [call(tmp, settings, host, "state.show_sls", sls, f"pillar={TO_CLUSTER}")
                 for sls in ("web.switch", "web.check", "web.schema", "haproxy.roundtrip")]
    if host.startswith("db-"):
        sets.append(call(tmp, settings, host, "state.show_sls", "web.move"))
    for states in sets:
        for sid, key, text in shell_strings(states):
            # not whole, nor in part (every secret holds HARD)
            assert not any(secret in text for secret in ALL), f"{host} {sid} {key} holds a secret"
            assert "pässwörd" not in text and "$HOME ${PATH}" not in text, f"{host} {sid} {key} holds a secret"


@pytest.mark.parametrize("host", [h for h in HOSTS if h.startswith("db-")])
def test_patroni_yml_holds_the_exact_passwords(tmp, settings, highstates, host):
    hl = arg(highstates[host], "patroni-config-file", "context")["hl"]
    doc = yaml.safe_load(template(tmp, settings, host, "patroni/files/patroni.yml.jinja", hl=hl))
    assert doc["restapi"]["authentication"]["password"] == API_PASSWORD
    for user in ("superuser", "replication", "rewind"):
        assert doc["postgresql"]["authentication"][user]["password"] == PASSWORDS[user]


@pytest.mark.parametrize("host", [h for h in HOSTS if h.startswith("db-")])
def test_pgbouncer_userlist_holds_the_exact_password(highstates, host):
    text = arg(highstates[host], "pgbouncer-auth-file", "contents")
    # PgBouncer's rule (checked against PgBouncer itself in tests/unit/test_formats.py): "" is one "
    # the auth_query user, then the exporters' login (a stats user: the lab has a monitoring host)
    m = re.fullmatch(r'"((?:[^"]|"")*)" "((?:[^"]|"")*)"\n"((?:[^"]|"")*)" "((?:[^"]|"")*)"\n', text)
    assert m and [g.replace('""', '"') for g in m.groups()] == ["pgbouncer_auth", PASSWORDS["pgbouncer_auth"],
                                                                 "halite_monitor", PASSWORDS["monitor"]]
    ini = arg(highstates[host], "pgbouncer-config-file", "context")
    assert not any(p in json.dumps(ini, ensure_ascii=False) for p in ALL)


@pytest.mark.parametrize("host", [h for h in HOSTS if h.startswith("db-")])
def test_roles_get_the_exact_passwords(highstates, host):
    states = highstates[host]
    assert arg(states, "patroni-role-pgbouncer_auth", "password") == PASSWORDS["pgbouncer_auth"]
    assert arg(states, "patroni-role-app", "password") == PASSWORDS["app"]


def test_legacy_roles_get_the_exact_passwords(highstates):
    states = highstates["app-01"]
    assert arg(states, "legacy-role-app", "password") == PASSWORDS["app"]
    assert arg(states, "legacy-role-move", "password") == PASSWORDS["legacy_move"]

def test_roundtrip_gate_gets_the_exact_password(tmp, settings):
    states = call(tmp, settings, "app-01", "state.show_sls", "haproxy.roundtrip")
    assert arg(states, "haproxy-write-read-roundtrip", "env")["PGPASSWORD"] == PASSWORDS["app"]
    assert not any(p in arg(states, "haproxy-write-read-roundtrip", "name") for p in ALL)


@pytest.mark.parametrize("target", ["legacy", "cluster"])
def test_site_env_reaches_gunicorn_exactly(tmp, settings, target):
    """site.env rendered from the state's context, read by the rendered gunicorn.conf.py
    (which gunicorn executes in its master; the workers inherit its environment): the exact DSNs
    and key. Not through gunicorn's raw_env, which strips each entry."""
    states = call(tmp, settings, "app-01", "state.show_sls", "web.config",
                  f'pillar={json.dumps({"halite": {"web": {"database_target": target}}})}')
    site = arg(states, "web-site-env", "context")["site"]
    env_file = tmp / f"site-{target}.env"
    ctx = arg(states, "web-site-env", "context")
    env_file.write_text(template(tmp, settings, "app-01", "web/files/site.env.jinja", site=site,
                                 secure_cookies=ctx["secure_cookies"]), encoding="utf-8")
    conf = template(tmp, settings, "app-01", "web/files/gunicorn.conf.py.jinja", env_file=str(env_file),
                    app_dir="/opt/carsale/app", bind="127.0.0.1:8000", workers=2, threads=2)
    # gunicorn executes the file in its master; the workers inherit the master's environment
    conf_file = tmp / f"gunicorn-{target}.conf.py"
    conf_file.write_text(conf, encoding="utf-8")
    probe = ("import json, os, runpy; runpy.run_path(os.environ['CONF']); "
             "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('HALITE_WEB_')}))")
    out = subprocess.run([sys.executable, "-c", probe], env={"CONF": str(conf_file), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True)
    env = json.loads(out.stdout)
    assert env["HALITE_WEB_SECRET_KEY"] == SECRET_KEY
    assert env["HALITE_WEB_SESSION_COOKIE_SECURE"] == "1"  # the site is on https
    port = 5433 if target == "legacy" else 5000
    # the cluster through HAProxy here, verified as its service name (TLS on the pgbouncer link by default)
    where = ({"host": "127.0.0.1"} if target == "legacy" else
             {"host": "halite.halite.lab", "hostaddr": "127.0.0.1", "sslmode": "verify-full",
              "sslrootcert": "/etc/halite/tls/ca.crt"})
    assert conninfo_to_dict(env["HALITE_WEB_WRITE_DSN"]) == {
        **where, "port": str(port), "dbname": "carsale", "user": "carsale", "password": PASSWORDS["app"]}
    assert conninfo_to_dict(env["HALITE_WEB_READ_DSN"])["password"] == PASSWORDS["app"]
    # and the site's own reader keeps them as they are
    sys.path.insert(0, str(rendering.REPO / "web"))
    from halite_web.config import load_config
    cfg = load_config(environ=env)
    assert cfg["SECRET_KEY"] == SECRET_KEY and conninfo_to_dict(cfg["WRITE_DSN"])["password"] == PASSWORDS["app"]


def test_web_states_pass_the_exact_dsns(tmp, settings):
    for sls in ("web.switch", "web.check"):
        states = call(tmp, settings, "app-01", "state.show_sls", sls, f"pillar={TO_CLUSTER}")
        sid = "web-switch-guard-move-finished" if sls == "web.switch" else "web-site-answers"
        assert conninfo_to_dict(arg(states, sid, "env")["LEGACY_DSN"])["password"] == PASSWORDS["app"]
    states = call(tmp, settings, "app-01", "state.show_sls", "web.schema")
    assert conninfo_to_dict(arg(states, "web-schema-migrate", "env")["HALITE_WEB_WRITE_DSN"])["password"] == \
        PASSWORDS["app"]


def test_the_move_gets_the_exact_conninfo(tmp, settings):
    states = call(tmp, settings, "db-01", "state.show_sls", "web.move")
    body = states["web-move-database-to-cluster"]["module"]
    kwargs = {k: v for item in next(i for i in body if isinstance(i, dict) and "pg_move.move" in i)["pg_move.move"]
              for k, v in item.items()}
    for key in ("source_dsn", "source_conninfo_for_target"):
        assert conninfo_to_dict(kwargs[key]) == {"host": "10.77.1.20", "port": "5433", "dbname": "carsale",
                                                 "user": "legacy_move", "password": PASSWORDS["legacy_move"]}
    assert "password" not in conninfo_to_dict(kwargs["target_dsn"])
