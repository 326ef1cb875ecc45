"""TLS on etcd (clients and peers) and on Patroni's REST API, rendered for the lab's hosts
(salt-call --local, tests/render/rendering.py): etcd's environment file, patroni.yml's
etcd3/restapi/ctl sections, HAProxy's health checks, the leader-away script, the site's
site.env and orch.restore's etcd call; each with TLS (the default) and with both links in
``tls.unsafe_plaintext`` (everything in clear text, as before). File templates are rendered
with the context their state passes, as file.managed does."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

import rendering
from rendering import arg
from halite import config

CA, CERT, KEY = "/etc/halite/tls/ca.crt", "/etc/halite/tls/host.crt", "/etc/halite/tls/host.key"
PG_KEY, ETCD_KEY = "/etc/halite/tls/postgres.key", "/etc/halite/tls/etcd.key"
TO_CLUSTER = json.dumps({"halite": {"web": {"database_target": "cluster"}}})
PLAINTEXT = {"tls": {"unsafe_plaintext": ["etcd", "patroni_api"]}}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-tls-api")


def settings_file(tmp: Path, extra: dict) -> Path:
    """A HALITE_SETTINGS file: the caller's own (if any) plus ``extra``."""
    own = os.environ.get("HALITE_SETTINGS")
    data = yaml.safe_load(Path(own).read_text()) or {} if own and Path(own).exists() else {}
    data = config.deep_merge(data, extra)
    path = tmp / f"settings-{abs(hash(json.dumps(data, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module", params=["tls", "plaintext"])
def mode(request, tmp):
    """("tls" | "plaintext", the settings file of that mode)."""
    return request.param, settings_file(tmp, {} if request.param == "tls" else PLAINTEXT)


def call(tmp: Path, settings: Path, host: str, *args: str):
    return rendering.answer(tmp, host, *args, settings=settings)


def template(tmp: Path, settings: Path, host: str, source: str, **context) -> str:
    return rendering.render_template(tmp, host, source, settings=settings, tag=settings.stem, **context)


def env_file(text: str) -> dict:
    return dict(re.findall(r'^([A-Z_]+)="(.*)"$', text, re.M))


def test_etcd_serves_clients_and_peers_over_tls(tmp, mode):
    name, settings = mode
    states = call(tmp, settings, "db-02", "state.show_sls", "etcd")
    env = env_file(template(tmp, settings, "db-02", "etcd/files/etcd.env.jinja",
                            **arg(states, "etcd-config-file", "context")))
    s = "https" if name == "tls" else "http"
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"{s}://10.77.1.12:2380"
    # 127.0.0.1 keeps listening for local clients
    assert env["ETCD_LISTEN_CLIENT_URLS"] == f"{s}://10.77.1.12:2379,{s}://127.0.0.1:2379"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"{s}://10.77.1.12:2379"
    assert env["ETCD_INITIAL_CLUSTER"] == ",".join(f"db-0{i}={s}://10.77.1.1{i}:2380" for i in (1, 2, 3))
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "halite-lab"
    tls_keys = {"ETCD_CLIENT_CERT_AUTH", "ETCD_TRUSTED_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE",
                "ETCD_PEER_CLIENT_CERT_AUTH", "ETCD_PEER_TRUSTED_CA_FILE", "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE"}
    if name == "plaintext":
        assert not tls_keys & set(env) and "etcd-tls-key" not in states
        return
    assert {k: env[k] for k in tls_keys} == {
        "ETCD_CLIENT_CERT_AUTH": "true", "ETCD_TRUSTED_CA_FILE": CA, "ETCD_CERT_FILE": CERT, "ETCD_KEY_FILE": ETCD_KEY,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true", "ETCD_PEER_TRUSTED_CA_FILE": CA, "ETCD_PEER_CERT_FILE": CERT,
        "ETCD_PEER_KEY_FILE": ETCD_KEY}
    # etcd's own copy of the host key: etcd's alone, never in a diff, before etcd (re)starts
    assert arg(states, "etcd-tls-key", "name") == ETCD_KEY
    assert (arg(states, "etcd-tls-key", "user"), arg(states, "etcd-tls-key", "mode")) == ("etcd", "0600")
    assert arg(states, "etcd-tls-key", "show_changes") is False
    assert "PRIVATE KEY" in arg(states, "etcd-tls-key", "contents")
    assert {"sls": "etcd.install"} in arg(states, "etcd-tls-key", "require")
    assert {"file": "etcd-tls-key"} in arg(states, "etcd-service-running", "watch")


def test_patroni_talks_to_etcd_and_serves_its_api_over_tls(tmp, mode):
    name, settings = mode
    states = call(tmp, settings, "db-01", "state.show_sls", "patroni")
    hl = arg(states, "patroni-config-file", "context")["hl"]
    doc = yaml.safe_load(template(tmp, settings, "db-01", "patroni/files/patroni.yml.jinja", hl=hl))
    assert doc["etcd3"]["hosts"] == ["10.77.1.11:2379", "10.77.1.12:2379", "10.77.1.13:2379"]
    assert doc["restapi"]["authentication"]["username"] == "patroni"  # the password stays as it is
    if name == "plaintext":
        assert doc["etcd3"] == {"hosts": doc["etcd3"]["hosts"], "protocol": "http"}
        assert not {"certfile", "keyfile", "cafile", "verify_client"} & set(doc["restapi"]) and "ctl" not in doc
        # postgres's key copy stays: postgresql.tls lays it down for PostgreSQL and PgBouncer too
        assert arg(states, "halite-tls-key-postgres", "user") == "postgres"
        return
    # Patroni runs as postgres: its copy of the key, for etcd and for its API
    assert doc["etcd3"] == {"hosts": doc["etcd3"]["hosts"], "protocol": "https",
                            "cacert": CA, "cert": CERT, "key": PG_KEY}
    assert {k: doc["restapi"][k] for k in ("certfile", "keyfile", "cafile", "verify_client")} == {
        "certfile": CERT, "keyfile": PG_KEY, "cafile": CA, "verify_client": "optional"}
    assert doc["ctl"] == {"insecure": False, "cacert": CA, "certfile": CERT, "keyfile": PG_KEY}
    key = "halite-tls-key-postgres"
    assert arg(states, key, "name") == PG_KEY
    assert (arg(states, key, "user"), arg(states, key, "group"), arg(states, key, "mode")) == ("postgres", "postgres", "0600")
    assert arg(states, key, "show_changes") is False and "PRIVATE KEY" in arg(states, key, "contents")
    assert {"file": key} in arg(states, "patroni-service-running", "watch")


def test_haproxy_checks_patroni_over_verified_tls(tmp, mode):
    name, settings = mode
    states = call(tmp, settings, "app-01", "state.show_sls", "haproxy")
    text = template(tmp, settings, "app-01", "haproxy/files/haproxy.cfg.jinja",
                    hl=arg(states, "haproxy-config-file", "context")["hl"])
    lines = [line.strip() for line in text.splitlines()]
    servers = [line for line in lines if line.startswith("server ")]
    # each listen: three members through their PgBouncer, three backups
    assert len(servers) == 12, servers
    tls = " verify required ca-file {ca} check-sni db-0{i} verifyhost db-0{i}"
    for i in (1, 2, 3):
        verify = tls.format(ca=CA, i=i) if name == "tls" else ""
        assert (f"server db-0{i} 10.77.1.1{i}:6432 maxconn 10000 check on-marked-up shutdown-backup-sessions"
                + verify) in servers
        assert f"server db-0{i}-postgres 10.77.1.1{i}:5432 backup maxconn 20 check" + verify in servers
        assert f"server db-0{i} 10.77.1.1{i}:6432 maxconn 10000 check" + verify in servers
        # (HAProxy wants the check's TLS settings on a tracking server too)
        assert f"server db-0{i}-primary 10.77.1.1{i}:6432 backup maxconn 10000 track primary/db-0{i}" + verify in servers
    # sized for a storm (issue 14 item 4): the lab's 9,000 clients a port (this machine's open-file
    # limit, pillar/lab.yaml), the rest queue for 30 s, and systemd's open-file limit covers the
    # global maxconn (HAProxy may not raise it in a container)
    assert "maxconn 9100" in lines and lines.count("maxconn 9000") == 2 and "timeout queue 30s" in lines
    assert "LimitNOFILE=19224" in arg(states, "haproxy-limits-dropin", "contents")
    assert arg(states, "haproxy-limits-restart", "onchanges") == [{"file": "haproxy-limits-dropin"}]
    # both listens: Patroni's API (over TLS when on), then the traffic's server answers an SSLRequest
    ssl = " ssl" if name == "tls" else ""
    connect = [i for i, line in enumerate(lines) if line == f"tcp-check connect port 8008{ssl}"]
    assert len(connect) == 2
    for i, uri in zip(connect, ("/primary", "/replica?lag=1MB")):
        assert lines[i:i + 6] == [f"tcp-check connect port 8008{ssl}", f'tcp-check send "GET {uri} HTTP/1.0\\r\\n\\r\\n"',
                                  'tcp-check expect rstring "^HTTP/1\\.[01] 200"', "tcp-check connect",
                                  "tcp-check send-binary 0000000804d2162f", 'tcp-check expect rbinary "^(53|4E)"']
    assert "check-ssl" not in text and "httpchk" not in text
    if name == "tls":
        assert {"file": "halite-tls-ca"} in arg(states, "haproxy-config-file", "require")


def test_leader_away_script_uses_tls_with_the_postgres_key(tmp, mode):
    name, settings = mode
    states = call(tmp, settings, "db-01", "state.show_sls", "patroni.etcd_leader")
    text = template(tmp, settings, "db-01", "patroni/files/halite-etcd-leader-away.py",
                    **arg(states, "etcd-leader-away-script", "context"))
    compile(text, "halite-etcd-leader-away.py", "exec")  # valid Python in either mode
    s = "https" if name == "tls" else "http"
    assert f'ETCD = "{s}://127.0.0.1:2379"' in text and f'PATRONI = "{s}://127.0.0.1:8008"' in text
    tls = {"ca": CA, "cert": CERT, "key": PG_KEY} if name == "tls" else {}
    assert f"ETCD_TLS = {json.dumps(tls)}" in text and f"PATRONI_TLS = {json.dumps(tls)}" in text


def test_site_verifies_patroni_with_halites_ca(tmp, mode):
    name, settings = mode
    states = call(tmp, settings, "app-01", "state.show_sls", "web.config", f"pillar={TO_CLUSTER}")
    context = arg(states, "web-site-env", "context")
    site = context["site"]
    env = dict(line.split("=", 1) for line in template(tmp, settings, "app-01", "web/files/site.env.jinja", **context)
               .splitlines() if line.startswith("HALITE_WEB_"))
    s = "https" if name == "tls" else "http"
    assert env["HALITE_WEB_PATRONI_URLS"] == ",".join(f"{s}://10.77.1.1{i}:8008" for i in (1, 2, 3))
    assert env["HALITE_WEB_PATRONI_CA_FILE"] == (CA if name == "tls" else "")


def test_restore_removes_the_cluster_from_etcd_over_tls(tmp, mode):
    name, settings = mode
    steps = call(tmp, settings, "control", "state.show_sls", "orch.restore",
                 'pillar={"target": {"name": "before-42"}}')
    kwarg = arg(steps, "restore-remove-cluster", "kwarg")
    s = "https" if name == "tls" else "http"
    assert kwarg["endpoints"] == ",".join(f"{s}://10.77.1.1{i}:2379" for i in (1, 2, 3))
    stop = arg(steps, "restore-stop-leader", "kwarg")
    if name == "tls":
        assert (kwarg["cacert"], kwarg["cert"], kwarg["key"]) == (CA, CERT, KEY)
        assert stop["api_ca_file"] == CA
    else:
        assert not {"cacert", "cert", "key"} & set(kwarg) and "api_ca_file" not in stop
