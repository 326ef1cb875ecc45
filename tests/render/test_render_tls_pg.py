"""TLS on PostgreSQL and PgBouncer, rendered both ways (salt-call --local as the lab's hosts,
tests/render/rendering.py): with the links encrypted (the default) and with both in
``tls.unsafe_plaintext``. patroni.yml's local parameters, Patroni's connection options and
pg_hba; postgres's copy of the key; pgbouncer.ini; the site's DSNs and HAProxy's round-trip gate."""
from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

import rendering
from rendering import arg
from halite import config, view

CA, CERT, PG_KEY = view.TLS_PATHS["ca"], view.TLS_PATHS["cert"], view.TLS_PATHS["keys"]["postgres"]
PLAIN = {"tls": {"unsafe_plaintext": ["postgresql", "pgbouncer"]}}
TO_CLUSTER = json.dumps({"halite": {"web": {"database_target": "cluster"}}})
MODES = {"tls": None, "plaintext": PLAIN}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-tls-pg")


def settings_file(tmp: Path, extra: dict | None) -> Path:
    """A HALITE_SETTINGS file: the caller's own (if any) plus ``extra``."""
    own = os.environ.get("HALITE_SETTINGS")
    data = yaml.safe_load(Path(own).read_text()) or {} if own and Path(own).exists() else {}
    data = config.deep_merge(data, extra or {})
    path = tmp / f"settings-{'plain' if extra else 'tls'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def call(tmp: Path, host: str, mode: str, *args: str):
    return rendering.answer(tmp, host, *args, settings=settings_file(tmp, MODES[mode]))


def template(tmp: Path, host: str, mode: str, source: str, **context) -> str:
    """A file template rendered as ``host``, with the context its state passes."""
    return rendering.render_template(tmp, host, source, settings=settings_file(tmp, MODES[mode]), tag=mode,
                                     **context)


@pytest.fixture(scope="module")
def db(tmp) -> dict:
    """db-01's highstate, per mode."""
    return {mode: call(tmp, "db-01", mode, "state.show_highstate") for mode in MODES}


@pytest.fixture(scope="module")
def patroni_yml(tmp, db) -> dict:
    return {mode: yaml.safe_load(template(tmp, "db-01", mode, "patroni/files/patroni.yml.jinja",
                                          hl=arg(db[mode], "patroni-config-file", "context")["hl"]))
            for mode in MODES}


@pytest.fixture(scope="module")
def pgbouncer_ini(tmp, db) -> dict:
    out = {}
    for mode in MODES:
        text = template(tmp, "db-01", mode, "pgbouncer/files/pgbouncer.ini.jinja",
                        **arg(db[mode], "pgbouncer-config-file", "context"))
        ini = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
        ini.read_string(text)
        out[mode] = ini
    return out


def test_postgresql_takes_its_tls_settings_in_patronis_local_parameters(patroni_yml):
    params = patroni_yml["tls"]["postgresql"]["parameters"]
    assert {k: params[k] for k in params if k.startswith("ssl")} == {
        "ssl": "on", "ssl_cert_file": CERT, "ssl_key_file": PG_KEY, "ssl_ca_file": CA,
        "ssl_min_protocol_version": "TLSv1.2"}
    # not in the DCS: the paths are each host's own
    assert not any(k.startswith("ssl") for k in patroni_yml["tls"]["bootstrap"]["dcs"]["postgresql"]["parameters"])
    assert not any(k.startswith("ssl") for k in patroni_yml["plaintext"]["postgresql"]["parameters"])
    assert patroni_yml["plaintext"]["postgresql"]["parameters"] == {
        k: v for k, v in params.items() if not k.startswith("ssl")}


def test_patronis_connections_verify_the_server(patroni_yml):
    lab = config.load()["users"]
    for role in ("superuser", "replication", "rewind"):
        auth = patroni_yml["tls"]["postgresql"]["authentication"][role]
        assert auth == {"username": lab[role]["username"], "password": lab[role]["password"],
                        "sslmode": "verify-full", "sslrootcert": CA}
        assert patroni_yml["plaintext"]["postgresql"]["authentication"][role] == {
            "username": lab[role]["username"], "password": lab[role]["password"]}


def test_pg_hba_is_hostssl_for_the_network(patroni_yml):
    tls, plain = patroni_yml["tls"]["postgresql"]["pg_hba"], patroni_yml["plaintext"]["postgresql"]["pg_hba"]
    network = [line for line in tls if line.split()[0] not in ("local",) and "127.0.0.1/32" not in line]
    assert network and all(line.split()[0] == "hostssl" for line in network)
    assert "hostssl replication replicator 10.77.1.12/32 scram-sha-256" in tls
    assert "host all all 127.0.0.1/32 scram-sha-256" in tls
    assert not any(line.startswith("hostssl") for line in plain)
    assert plain == [line.replace("hostssl ", "host ", 1) for line in tls]


def test_postgres_copy_of_the_key_is_its_own_and_never_shown(db):
    for mode in MODES:
        states = db[mode]
        assert arg(states, "halite-tls-key-postgres", "name") == PG_KEY
        assert arg(states, "halite-tls-key-postgres", "user") == "postgres"
        assert arg(states, "halite-tls-key-postgres", "mode") == "0600"
        assert arg(states, "halite-tls-key-postgres", "show_changes") is False
        # the host's key, as root's copy holds it
        assert arg(states, "halite-tls-key-postgres", "contents") == arg(states, "halite-tls-key", "contents")
        assert "BEGIN PRIVATE KEY" in arg(states, "halite-tls-key-postgres", "contents")
        # after the package (the postgres user) and the folder; PgBouncer's config waits for it
        assert {"pkg": "postgresql-packages"} in arg(states, "halite-tls-key-postgres", "require")
        assert {"file": "halite-tls-dir"} in arg(states, "halite-tls-key-postgres", "require")
        assert {"sls": "postgresql.tls"} in arg(states, "pgbouncer-config-file", "require")
        # a renewed certificate or key restarts PgBouncer
        for sid in ("halite-tls-ca", "halite-tls-cert", "halite-tls-key-postgres"):
            assert {"file": sid} in arg(states, "pgbouncer-service-running", "watch")
        # one state manages the file
        assert [sid for sid in states if sid != "halite-tls-key-postgres"
                and any(isinstance(i, dict) and i.get("name") == PG_KEY
                        for m, b in states[sid].items() if not m.startswith("__") for i in b)] == []


def test_postgres_key_comes_before_patroni_starts_postgresql(tmp):
    low = call(tmp, "db-01", "tls", "state.show_lowstate")
    order = {(c["__id__"], c["state"]): c.get("order") for c in low}
    assert order[("halite-tls-key-postgres", "file")] < order[("patroni-config-file", "file")]
    assert order[("halite-tls-key-postgres", "file")] < order[("pgbouncer-config-file", "file")]


def test_pgbouncer_requires_tls_from_clients_and_verifies_postgresql(pgbouncer_ini):
    pgb = dict(pgbouncer_ini["tls"]["pgbouncer"])
    assert {k: v for k, v in pgb.items() if "_tls_" in k} == {
        "client_tls_sslmode": "require", "client_tls_cert_file": CERT, "client_tls_key_file": PG_KEY,
        "client_tls_ca_file": CA, "server_tls_sslmode": "verify-full", "server_tls_ca_file": CA}
    # PgBouncer dials the host's own address (in its certificate), and still listens on the loopback
    assert pgbouncer_ini["tls"]["databases"]["*"].startswith("host=10.77.1.11 ")
    assert pgb["listen_addr"] == "10.77.1.11,127.0.0.1"
    plain = dict(pgbouncer_ini["plaintext"]["pgbouncer"])
    assert not any("_tls_" in k for k in plain)
    # a storm of clients waits in the queue (issue 14 item 4)
    assert (pgb["max_client_conn"], pgb["listen_backlog"]) == ("10000", "4096")
    assert {k: v for k, v in pgb.items() if "_tls_" not in k} == plain


def test_pgbouncers_open_file_limit_holds_its_clients(db):
    contents = arg(db["tls"], "pgbouncer-restart-dropin", "contents")
    assert "LimitNOFILE=11184" in contents.splitlines()


def test_the_sites_dsns_verify_the_service_name_through_haproxy(tmp):
    for mode, want in (("tls", {"host": "halite.halite.lab", "hostaddr": "127.0.0.1", "sslmode": "verify-full",
                                "sslrootcert": CA}),
                       ("plaintext", {"host": "127.0.0.1"})):
        context = arg(call(tmp, "app-01", mode, "state.show_sls", "web.config", f"pillar={TO_CLUSTER}"),
                      "web-site-env", "context")
        site = context["site"]
        for key, port in (("write_dsn", "5000"), ("read_dsn", "5001")):
            parsed = conninfo_to_dict(site[key])
            assert {k: parsed[k] for k in parsed if k not in ("dbname", "user", "password")} == {**want, "port": port}
        env = template(tmp, "app-01", mode, "web/files/site.env.jinja", **context)
        assert f"HALITE_WEB_WRITE_DSN={site['write_dsn']}\n" in env


def test_the_roundtrip_gate_verifies_the_service_name(tmp):
    tls = arg(call(tmp, "app-01", "tls", "state.show_sls", "haproxy.roundtrip"), "haproxy-write-read-roundtrip", "name")
    assert ("w='host=halite.halite.lab hostaddr=127.0.0.1 port=5000 sslmode=verify-full "
            f"sslrootcert={CA} dbname=carsale user=carsale'") in tls
    assert ("r='host=halite.halite.lab hostaddr=127.0.0.1 port=5001 sslmode=verify-full "
            f"sslrootcert={CA} dbname=carsale user=carsale'") in tls
    plain = arg(call(tmp, "app-01", "plaintext", "state.show_sls", "haproxy.roundtrip"),
                "haproxy-write-read-roundtrip", "name")
    assert "w='host=127.0.0.1 port=5000 dbname=carsale user=carsale'" in plain
    assert "sslmode" not in plain
