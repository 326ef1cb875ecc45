"""Each host's view (halite/view.py): least privilege host by host, facts
derived once (etcd members, pg_hba from the access table, the DCS mapping,
versioned paths)."""
import copy
import json
import re
import stat

import pytest
import yaml

from halite import config, example, model, platforms, view

SECRETS = {
    "users.superuser.password": "su-Secret-1",
    "users.replication.password": "repl-Secret-2",
    "users.rewind.password": "rewind-Secret-3",
    "users.pgbouncer_auth.password": "auth-Secret-4",
    "users.app.password": "app-Secret-5",
    "users.legacy_move.password": "move-Secret-6",
    "patroni.restapi.password": "api-Secret-7",
    "web.secret_key": "web-Secret-8",
}


def with_secrets(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    for key, value in SECRETS.items():
        *parents, last = key.split(".")
        cur = raw
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return raw


def secrets_seen(pillar: dict) -> set[str]:
    text = json.dumps(pillar)
    return {key for key, value in SECRETS.items() if value in text}


LAB = config.raw()

#: The lab's roles, and the same hosts with the roles combined differently:
#: HAProxy on a db host, the site alone on app-01, the old server alone on old-01.
COMBINED = copy.deepcopy(LAB)
COMBINED["topology"]["hosts"] = {
    "jump-01": {"roles": ["jump"], "addresses": {"edge": "10.77.0.10", "private": "10.77.1.10"}},
    "db-01": {"roles": ["db", "haproxy"], "addresses": {"private": "10.77.1.11"}},
    "db-02": {"roles": ["db"], "addresses": {"private": "10.77.1.12"}},
    "db-03": {"roles": ["db"], "addresses": {"private": "10.77.1.13"}},
    "app-01": {"roles": ["app"], "addresses": {"edge": "10.77.0.20", "private": "10.77.1.20"}},
    "old-01": {"roles": ["legacy_db"], "addresses": {"private": "10.77.1.30"}},
}

DB = set(SECRETS) - {"web.secret_key"}
#: Generated per install (halite.generated), only with a backup host in the topology.
GENERATED = {"users.backup.password", "backup.cipher_pass"}


def generated_seen(pillar: dict) -> set[str]:
    halite = pillar["halite"]
    seen = set()
    if (halite.get("users", {}).get("backup") or {}).get("password"):
        seen.add("users.backup.password")
    if halite.get("backup", {}).get("cipher_pass"):
        seen.add("backup.cipher_pass")
    if halite.get("haproxy", {}).get("stats_password"):
        seen.add("haproxy.stats_password")
    if (halite.get("users", {}).get("monitor") or {}).get("password"):
        seen.add("users.monitor.password")
    return seen


@pytest.mark.parametrize("raw, expected", [
    (LAB, {"jump-01": set(), "db-01": DB | {"users.backup.password", "users.monitor.password"},
           "db-02": DB | {"users.backup.password", "users.monitor.password"},
           "db-03": DB | {"users.backup.password", "users.monitor.password"}, "control": set(),
           # the monitoring host: HAProxy's stats login (its /metrics), nothing else
           "mon-01": {"haproxy.stats_password"},
           # app-01 runs the site, HAProxy (its stats page's login) and the old server
           "app-01": {"users.app.password", "users.legacy_move.password", "web.secret_key",
                      "haproxy.stats_password"},
           # the repository's host: its read-only login and the repository's passphrase, nothing else
           "backup-01": GENERATED}),
    (COMBINED, {"jump-01": set(), "db-01": DB | {"haproxy.stats_password"}, "db-02": DB, "db-03": DB,
                "control": set(), "app-01": {"users.app.password", "web.secret_key"},
                "old-01": {"users.app.password", "users.legacy_move.password"}}),
], ids=["lab", "roles-combined-differently"])
def test_each_host_receives_only_the_secrets_its_roles_need(raw, expected):
    data = config.load(settings={k: v for k, v in with_secrets(raw).items() if k != "topology"},
                       topology=raw["topology"])
    for host, secrets in expected.items():
        pillar = view.pillar_for(host, data)
        assert secrets_seen(pillar) | generated_seen(pillar) == secrets, host
        if host != "control":
            assert set(pillar["halite"]["host"]["secrets"]) == secrets, host


def test_a_haproxy_only_host_gets_the_app_password_alone():
    raw = copy.deepcopy(COMBINED)
    raw["topology"]["hosts"]["db-01"]["roles"] = ["db"]
    raw["topology"]["hosts"]["lb-01"] = {"roles": ["haproxy"], "addresses": {"private": "10.77.1.40"}}
    data = config.load(settings={k: v for k, v in with_secrets(raw).items() if k != "topology"},
                       topology=raw["topology"])
    pillar = view.pillar_for("lb-01", data)
    # and its stats page's login (generated per install)
    assert secrets_seen(pillar) | generated_seen(pillar) == {"users.app.password", "haproxy.stats_password"}


def test_config_show_masks_every_secret_the_host_holds():
    data = config.load(settings={k: v for k, v in with_secrets(LAB).items() if k != "topology"},
                       topology=LAB["topology"])
    shown = config.show("db-01", data)
    assert secrets_seen({"halite": shown}) == set()
    assert shown["users"]["superuser"]["password"] == view.MASK
    assert "password" not in config.show("jump-01", data)["users"]["superuser"]


def test_show_names_the_hosts_when_the_host_is_unknown():
    with pytest.raises(config.ConfigError) as info:
        config.show("db-09")
    assert "'db-09' is not in the topology; hosts: jump-01, db-01" in str(info.value)


@pytest.fixture(scope="module")
def data():
    return config.load()


def plaintext(data: dict, *links: str) -> dict:
    """``data`` with ``links`` in ``tls.unsafe_plaintext``."""
    out = copy.deepcopy(data)
    out["tls"]["unsafe_plaintext"] = list(links)
    return out


def test_etcd_member_list_and_peers(data):
    # TLS by default: https everywhere, 127.0.0.1 listening too, the etcd user's key
    v = view.etcd_view(data, "db-02")
    assert v["scheme"] == "https"
    assert v["initial_cluster"] == ("db-01=https://10.77.1.11:2380,db-02=https://10.77.1.12:2380,"
                                    "db-03=https://10.77.1.13:2380")
    assert v["endpoints"] == ["10.77.1.11:2379", "10.77.1.12:2379", "10.77.1.13:2379"]
    assert v["client_urls"] == ["https://10.77.1.11:2379", "https://10.77.1.12:2379", "https://10.77.1.13:2379"]
    assert v["peers"] == ["10.77.1.11", "10.77.1.13"]
    assert v["peer_url"] == "https://10.77.1.12:2380"
    assert v["listen_client_urls"] == "https://10.77.1.12:2379,https://127.0.0.1:2379"
    assert v["advertise_client_url"] == "https://10.77.1.12:2379"
    assert v["local_url"] == "https://127.0.0.1:2379"
    assert v["token"] == "halite-lab"
    assert v["tls"] == {"ca": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt",
                        "key": "/etc/halite/tls/etcd.key",
                        "client": {"ca": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt",
                                   "key": "/etc/halite/tls/postgres.key"}}


def test_etcd_in_clear_text_when_the_pillar_says_so(data):
    v = view.etcd_view(plaintext(data, "etcd"), "db-02")
    assert v["scheme"] == "http" and v["tls"] is None
    assert v["initial_cluster"] == ("db-01=http://10.77.1.11:2380,db-02=http://10.77.1.12:2380,"
                                    "db-03=http://10.77.1.13:2380")
    assert v["peer_url"] == "http://10.77.1.12:2380"
    assert v["listen_client_urls"] == "http://10.77.1.12:2379,http://127.0.0.1:2379"
    assert v["endpoints"] == ["10.77.1.11:2379", "10.77.1.12:2379", "10.77.1.13:2379"]


def test_patroni_api_and_haproxy_checks_follow_the_patroni_api_link(data):
    api = view.patroni_api_view(data)
    assert api == {"scheme": "https", "local_url": "https://127.0.0.1:8008",
                   "tls": {"ca": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt",
                           "key": "/etc/halite/tls/postgres.key"}}
    checks = view.haproxy_checks(data)
    assert checks["db-02"] == "verify required ca-file /etc/halite/tls/ca.crt check-sni db-02 verifyhost db-02"
    backends = view.haproxy_backends(data)
    assert backends["servers"][1] == {"name": "db-02", "address": "10.77.1.12", "verify": checks["db-02"]}
    assert (backends["check_ssl"], backends["api_port"], backends["pooler_port"], backends["postgres_port"],
            backends["direct_maxconn"]) == (True, 8008, 6432, 5432, 20)
    # PostgreSQL's SSLRequest: length 8, then the code 1234 5679
    assert bytes.fromhex(backends["sslrequest_hex"]) == (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    assert list(checks) == ["db-01", "db-02", "db-03"]
    off = plaintext(data, "patroni_api")
    assert view.patroni_api_view(off) == {"scheme": "http", "local_url": "http://127.0.0.1:8008", "tls": None}
    assert set(view.haproxy_checks(off).values()) == {""}
    assert view.haproxy_backends(off)["check_ssl"] is False


def test_tls_clients_for_orchestrations(data):
    c = view.tls_clients(data)
    assert c["etcd_urls"] == ["https://10.77.1.11:2379", "https://10.77.1.12:2379", "https://10.77.1.13:2379"]
    assert c["etcd"] == {"cacert": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt",
                         "key": "/etc/halite/tls/host.key"}
    assert c["patroni_api_ca"] == "/etc/halite/tls/ca.crt"
    off = view.tls_clients(plaintext(data, "etcd", "patroni_api"))
    assert off == {"etcd_urls": ["http://10.77.1.11:2379", "http://10.77.1.12:2379", "http://10.77.1.13:2379"],
                   "etcd": None, "patroni_api_ca": None}


def plaintext(data: dict, *links: str) -> dict:
    """``data`` with ``links`` in ``tls.unsafe_plaintext``."""
    out = copy.deepcopy(data)
    out["tls"]["unsafe_plaintext"] = list(links)
    return out


def test_pg_hba_follows_the_access_table(data):
    hba = view.pg_hba(data)
    # TLS on PostgreSQL by default: network lines are hostssl (test_pg_hba_is_hostssl_with_tls)
    assert "hostssl replication replicator 10.77.1.12/32 scram-sha-256" in hba
    assert "hostssl all carsale,pgbouncer_auth 10.77.1.20/32 scram-sha-256" in hba
    # the app host may use the pooler's users, never replication or the superuser
    assert not any("10.77.1.20" in line and ("replication" in line or "postgres," in line) for line in hba)
    assert not any("0.0.0.0" in line for line in hba)
    # take haproxy out of the postgresql row of the table: app-01 leaves pg_hba too
    narrowed = copy.deepcopy(data)
    for svc in narrowed["firewall"]["services"]:
        if svc["name"] == "postgresql":
            svc["from"] = ["db"]
    assert not any("10.77.1.20" in line or "10.77.0.20" in line for line in view.pg_hba(narrowed))
    rule = [r for r in view.firewall_rules(narrowed, "db-01") if r["name"] == "postgresql"][0]
    assert rule["sources"] == ["10.77.1.11", "10.77.1.12", "10.77.1.13"]


def test_pg_hba_is_hostssl_with_tls_and_host_in_plaintext(data):
    hba = view.pg_hba(data)
    network = [line for line in hba if not line.startswith("local") and "127.0.0.1/32" not in line]
    assert network and all(line.startswith("hostssl ") for line in network)
    # the loopback may stay in clear text (Patroni's local replication connection, local clients)
    assert "host all all 127.0.0.1/32 scram-sha-256" in hba
    assert "host replication replicator 127.0.0.1/32 scram-sha-256" in hba
    clear = view.pg_hba(plaintext(data, "postgresql"))
    # the same lines, host instead of hostssl: nothing else depends on TLS
    assert clear == [line.replace("hostssl ", "host ", 1) for line in hba]
    assert not any(line.startswith("hostssl") for line in clear)
    # PgBouncer's TLS alone does not change PostgreSQL's table
    assert view.pg_hba(plaintext(data, "pgbouncer")) == hba


def test_postgresql_tls_settings_and_patronis_client_options(data):
    tls = view.postgresql_tls(data)
    assert tls["parameters"] == {"ssl": "on", "ssl_cert_file": "/etc/halite/tls/host.crt",
                                 "ssl_key_file": "/etc/halite/tls/postgres.key",
                                 "ssl_ca_file": "/etc/halite/tls/ca.crt", "ssl_min_protocol_version": "TLSv1.2"}
    assert tls["client"] == {"sslmode": "verify-full", "sslrootcert": "/etc/halite/tls/ca.crt"}
    # postgres's copy of the key, not root's (PostgreSQL refuses a key another user may read)
    assert tls["parameters"]["ssl_key_file"] == view.TLS_PATHS["keys"]["postgres"]
    assert view.postgresql_tls(plaintext(data, "postgresql")) == {"parameters": {}, "client": {}}


def test_pgbouncer_tls_follows_both_links(data):
    lines = dict(view.pgbouncer_tls(data))
    assert lines == {"client_tls_sslmode": "require", "client_tls_cert_file": "/etc/halite/tls/host.crt",
                     "client_tls_key_file": "/etc/halite/tls/postgres.key", "client_tls_ca_file": "/etc/halite/tls/ca.crt",
                     "server_tls_sslmode": "verify-full", "server_tls_ca_file": "/etc/halite/tls/ca.crt"}
    # each side follows its own link
    assert {k for k, _ in view.pgbouncer_tls(plaintext(data, "pgbouncer"))} == {"server_tls_sslmode", "server_tls_ca_file"}
    assert all(k.startswith("client_") for k, _ in view.pgbouncer_tls(plaintext(data, "postgresql")))
    assert view.pgbouncer_tls(plaintext(data, "pgbouncer", "postgresql")) == []


def test_db_hosts_view_carries_the_tls_settings(data):
    v = view.host_view(data, "db-01")
    assert v["postgresql_tls"] == view.postgresql_tls(data)
    assert v["pgbouncer_tls"] == view.pgbouncer_tls(data)
    assert "postgresql_tls" not in view.host_view(data, "app-01")


def test_haproxy_roundtrip_verifies_the_service_name(data):
    from psycopg.conninfo import conninfo_to_dict

    dsn = view.host_view(data, "app-01")["roundtrip_dsn"]
    for side, port in (("write", data["haproxy"]["write_port"]), ("read", data["haproxy"]["read_port"])):
        assert conninfo_to_dict(dsn[side]) == {
            "host": "halite.halite.lab", "hostaddr": "127.0.0.1", "port": str(port), "sslmode": "verify-full",
            "sslrootcert": "/etc/halite/tls/ca.crt", "dbname": "carsale", "user": "carsale"}
    clear = view.host_view(plaintext(data, "pgbouncer"), "app-01")["roundtrip_dsn"]
    assert conninfo_to_dict(clear["write"]) == {"host": "127.0.0.1", "port": str(data["haproxy"]["write_port"]),
                                                "dbname": "carsale", "user": "carsale"}


def test_legacy_server_admits_the_hosts_the_table_names(data):
    assert view.legacy_hba_sources(data) == ["10.77.1.11", "10.77.1.12", "10.77.1.13"]


def test_dcs_mapping_is_one_mapping_in_the_declared_key_order(data):
    dcs = view.patroni_dcs(data)
    assert list(dcs)[:-1] == [k for k in model.DCS_KEYS if k in dcs]
    assert dcs["ttl"] == 20 and dcs["loop_wait"] == 3
    assert dcs["postgresql"]["parameters"]["wal_level"] == "logical"
    assert dcs["postgresql"]["use_pg_rewind"] is True


@pytest.mark.parametrize("family, version, bindir, pkgs, unit", [
    ("Debian", 15, "/usr/lib/postgresql/15/bin", ["postgresql-15", "postgresql-client-15"], "postgresql@15-legacy"),
    ("Debian", 17, "/usr/lib/postgresql/17/bin", ["postgresql-17", "postgresql-client-17"], "postgresql@17-legacy"),
    ("RedHat", 16, "/usr/pgsql-16/bin", ["postgresql16-server", "postgresql16"], "postgresql@16-legacy"),
])
def test_versioned_paths_are_resolved_once(family, version, bindir, pkgs, unit):
    p = platforms.resolve(family, version)
    assert p["paths"]["pg_bindir"] == bindir
    assert p["pkgs"]["postgresql"] == pkgs
    assert p["services"]["legacy"] == unit
    assert "{v}" not in json.dumps(p) and "{legacy}" not in json.dumps(p)


def test_pillar_example_is_generated_from_the_model():
    text = (config.REPO / "pillar.example").read_text()
    assert text == example.render(), "pillar.example is stale: run `halite config example > pillar.example`"
    # key by key and value by value: the example parses to the model's defaults
    parsed = yaml.safe_load(text)
    assert parsed == example.defaults()
    # no secret in the example: every password and key is empty, generated per install
    for user in model.Users.model_fields:
        assert parsed["users"][user]["password"] is None
    assert parsed["patroni"]["restapi"]["password"] is None and parsed["web"]["secret_key"] is None


#: The target default lab: the cluster on trixie with PostgreSQL 17, the old server on bookworm with 15.
TRIXIE = config.raw(topology_file=config.PILLAR_DIR / "topology-trixie.yaml",
                    settings_files=[config.PILLAR_DIR / "lab.yaml", config.PILLAR_DIR / "trixie.yaml"])


@pytest.mark.parametrize("host, release, major, pg, pkgs, legacy_unit", [
    ("db-01", "trixie", 13, 17, ["postgresql-17", "postgresql-client-17"], "postgresql@17-legacy"),
    ("jump-01", "trixie", 13, 17, ["postgresql-17", "postgresql-client-17"], "postgresql@17-legacy"),
    # the old server: its own PostgreSQL 15, and HAProxy's gate uses bookworm's client 15 against 17
    ("app-01", "bookworm", 12, 15, ["postgresql-15", "postgresql-client-15"], "postgresql@15-legacy"),
])
def test_each_host_installs_the_postgresql_of_its_release(host, release, major, pg, pkgs, legacy_unit):
    pillar = view.pillar_for(host, config.load(topology=TRIXIE["topology"],
                                               settings={k: v for k, v in TRIXIE.items() if k != "topology"}))
    h = pillar["halite"]
    assert (h["host"]["os_release"], h["host"]["os_major"], h["host"]["postgresql_version"]) == (release, major, pg)
    assert h["pkgs"]["postgresql"] == pkgs
    assert h["pkgs"]["pg_client"] == [f"postgresql-client-{pg}"]
    assert h["services"]["legacy"] == legacy_unit
    assert h["postgresql"]["version"] == 17  # the cluster's, unchanged on every host


def test_the_default_lab_stays_on_bookworm_with_postgresql_15(data):
    for host in data["topology"]["hosts"]:
        h = view.host_platform(data, host)
        assert (h["os_release"], h["os_major"], h["postgresql_version"]) == ("bookworm", 12, 15)


def test_monitoring_lag_limit_follows_maximum_lag_on_failover_unless_set(data):
    assert view.monitoring(data)["thresholds"]["replica_lag_bytes"] == data["patroni"]["dcs"]["maximum_lag_on_failover"]
    own = copy.deepcopy(data)
    own["monitoring"]["thresholds"]["replica_lag_bytes"] = 5 * 2**20
    assert view.monitoring(own)["thresholds"]["replica_lag_bytes"] == 5 * 2**20


def test_monitoring_derives_its_numbers_once(data):
    mon = view.monitoring(data)
    # 80% of max_client_conn 10000; 26h in seconds (PromQL compares numbers, not durations)
    assert mon["thresholds"]["pgbouncer_client_limit"] == 8000
    assert mon["thresholds"]["backup_max_age_seconds"] == 26 * 3600
    assert [view.prom_seconds(d) for d in ("500ms", "30s", "2m", "1d")] == [0.5, 30, 120, 86400]
    assert mon["synchronous_mode"] is True
    assert mon["patronictl"] == "/opt/patroni/bin/patronictl -c /etc/patroni/patroni.yml"


def test_scrape_jobs_speak_tls_to_patroni_and_etcd(data):
    jobs = {j["name"]: j for j in view.scrape_jobs(data)}
    assert jobs["patroni"]["scheme"] == "https"
    assert jobs["patroni"]["tls_config"] == {"ca_file": "/etc/halite/tls/ca.crt"}
    assert jobs["etcd"]["scheme"] == "https"
    assert jobs["etcd"]["tls_config"] == {"ca_file": "/etc/halite/tls/ca.crt", "cert_file": "/etc/halite/tls/host.crt",
                                          "key_file": "/etc/halite/tls/prometheus.key"}
    assert all(jobs[n]["scheme"] == "http" and jobs[n]["tls_config"] is None
               for n in ("node", "postgres", "pgbouncer", "haproxy"))
    off = {j["name"]: j for j in view.scrape_jobs(plaintext(data, "etcd", "patroni_api"))}
    assert {j["scheme"] for j in off.values()} == {"http"} and not any(j["tls_config"] for j in off.values())


def test_scrape_targets_follow_roles_and_ports(data):
    jobs = {j["name"]: j["targets"] for j in view.scrape_jobs(data)}
    assert [t["host"] for t in jobs["node"]] == list(data["topology"]["hosts"])
    assert [t["address"] for t in jobs["pgbouncer"]] == ["10.77.1.11:9127", "10.77.1.12:9127", "10.77.1.13:9127"]
    assert jobs["haproxy"] == [{"host": "app-01", "roles": ",app,haproxy,legacy_db,", "address": "10.77.1.20:7000"}]
    other = copy.deepcopy(data)
    other["monitoring"]["ports"]["node_exporter"] = 19100
    assert {t["address"] for t in view.scrape_jobs(other)[0]["targets"]} >= {"10.77.1.11:19100"}


def test_every_secret_left_empty_is_generated_once_per_install_and_kept():
    data = config.load()
    filled = {key: view._get(data, key) for key in view.SECRET_ROLES}
    assert all(isinstance(v, str) and len(v) >= 32 for v in filled.values()), filled
    assert len(set(filled.values())) == len(filled)
    # the lab's style is nasty: each password carries quotes, $, a backslash, # and more
    for key in ("users.app.password", "patroni.restapi.password", "web.secret_key"):
        assert all(c in filled[key] for c in "'\"$:\\ #"), key
    assert filled["patroni.restapi.password"].isascii() and not filled["users.app.password"].isascii()
    # pgBackRest's passphrase stays plain
    assert re.fullmatch(r"[A-Za-z0-9_-]{48}", filled["backup.cipher_pass"])
    # the same values on the next load (kept in the state folder, 0600)
    again = config.load()
    assert {key: view._get(again, key) for key in view.SECRET_ROLES} == filled
    stored = view.state_dir(data) / "secrets.yaml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # a value given in the settings wins, and nothing is generated for it
    given = config.load(settings={"users": {"app": {"password": "my own app password"}}})
    assert given["users"]["app"]["password"] == "my own app password"
    # `halite config check` generates nothing
    assert config.load(generate=False)["users"]["app"]["password"] is None


# --------------------------------------------------------------------------
# the site over TLS (halite.view.site_*): tests/render/test_render_tls_site.py runs nginx with it


def lab_data(extra: dict | None = None) -> dict:
    return model.dump(model.validate(config.deep_merge(config.raw(), extra or {})))


def test_site_url_is_https_on_the_edge_address_unless_plaintext():
    assert view.site_url(lab_data()) == "https://10.77.0.20/"
    assert view.site_url(lab_data({"web": {"https_port": 8443}})) == "https://10.77.0.20:8443/"
    plain = lab_data({"tls": {"unsafe_plaintext": ["site"]}})
    assert view.site_url(plain) == "http://10.77.0.20/"
    assert view.site_ca(plain) is None and view.site_ssl_context(plain) is None
    assert view.site_ca(lab_data()) == view.state_dir(lab_data()) / "ca.crt"
    # the certificate names the address the URL uses
    assert "10.77.0.20" in view.cert_names(lab_data(), "app-01")[1]


def test_site_url_needs_an_app_host():
    data = lab_data()
    data["topology"]["hosts"]["app-01"]["roles"] = ["haproxy"]
    with pytest.raises(ValueError, match="no host has the role 'app'"):
        view.site_url(data)


def test_lab_url_is_the_views(monkeypatch):
    from halite import lab

    assert lab.site_url() == view.site_url(config.load())


def test_site_view_redirect_and_hsts():
    site = view.site_view(lab_data(), "app-01")
    assert site["redirect"] == "https://$host$request_uri" and site["hsts"] == "max-age=31536000"
    assert view.site_view(lab_data({"web": {"https_port": 8443}}), "app-01")["redirect"] == \
        "https://$host:8443$request_uri"
    plain = view.site_view(lab_data({"tls": {"unsafe_plaintext": ["site"]}}), "app-01")
    assert plain["redirect"] is None and plain["hsts"] is None and plain["headers"] == site["headers"]
    assert site["rate_limit"] == {"zone": "site", "per_second": 300, "burst": 600}
    assert "app" in view.pillar_for("app-01", config.load())["halite"]["host"]["roles"]
    assert "site" not in view.pillar_for("db-01", config.load())["halite"]["host"]


def test_csp_allows_the_inline_scripts_by_hash_only(tmp_path):
    (tmp_path / "a.html").write_text('<script type="application/json" id="d">{{ x|tojson }}</script>\n'
                                     "<script>\nvar a = 1;\n</script>\n<script src=\"/static/x.js\"></script>")
    (tmp_path / "b.html").write_text("<p>none</p>")
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(b"\nvar a = 1;\n").digest()).decode()
    assert view.site_script_hashes(tmp_path) == [f"'sha256-{digest}'"]
    (tmp_path / "c.html").write_text("<script>var u = {{ url }};</script>")
    with pytest.raises(ValueError, match="template expression"):
        view.site_script_hashes(tmp_path)
    csp = view.site_csp()
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self' 'sha256-" in csp


def test_model_web_and_haproxy_keys():
    data = lab_data()
    assert data["web"]["https_port"] == 443 and data["web"]["rate_limit"] == {"per_second": 300, "burst": 600}
    assert data["haproxy"]["stats_user"] == "halite" and data["haproxy"]["stats_password"] is None
    with pytest.raises(model.ConfigError, match="web.https_port"):
        lab_data({"web": {"bind": "127.0.0.1:443"}})  # gunicorn on the https port
    # plain: the https port is not listened on, so it may be used
    lab_data({"tls": {"unsafe_plaintext": ["site"]}, "web": {"bind": "127.0.0.1:443"}})
    with pytest.raises(model.ConfigError, match="rate_limit"):
        lab_data({"web": {"rate_limit": {"per_second": 0}}})


def test_stats_password_is_generated_once_for_haproxy_hosts_only():
    data = lab_data()
    one = view.with_generated(data, ["haproxy"])["haproxy"]["stats_password"]
    assert one and one == view.with_generated(data, ["haproxy"])["haproxy"]["stats_password"]
    assert view.with_generated(data, ["db"])["haproxy"]["stats_password"] is None
    given = lab_data({"haproxy": {"stats_password": "mine: it's"}})
    assert view.with_generated(given, ["haproxy"])["haproxy"]["stats_password"] == "mine: it's"
    assert "haproxy.stats_password" not in view.secrets_for(["db", "app", "backup", "jump"])


def test_exporters_view_keeps_the_password_out_of_the_environment(data):
    ex = view.exporters_view(data, "db-02")
    password = data["users"]["monitor"]["password"]
    assert ex["node_args"] == ("--web.listen-address=10.77.1.12:9100 "
                               "--collector.textfile.directory=/var/lib/prometheus/node-exporter")
    assert password not in ex["postgres_env"] and password == ex["postgres_password"]
    assert 'DATA_SOURCE_PASS_FILE="/etc/prometheus/postgres-exporter.password"' in ex["postgres_env"]
    assert 'ARGS="--web.listen-address=10.77.1.12:9187"' in ex["postgres_env"]
    assert ex["pgbouncer_environment"]["PGBOUNCER_USER"] == "halite_monitor"
    assert password not in json.dumps(ex["pgbouncer_environment"])
    assert ex["pgbouncer_pgpass"].startswith("*:6432:pgbouncer:halite_monitor:") and ex["pgbouncer_pgpass"].count("\n") == 1
    # the backup host exports its backups' times, every TLS host its certificates' end
    assert view.exporters_view(data, "backup-01")["backup_metrics"] is True
    assert view.exporters_view(data, "jump-01")["cert_files"] == []
    assert "postgres_env" not in view.exporters_view(data, "app-01")


def test_alerts_go_to_the_webhook_or_to_the_recorder(data):
    am = view.alertmanager_view(data)
    assert am == {"webhook_url": "http://127.0.0.1:9095/alerts", "recorder": True, "listen": "127.0.0.1:9093",
                  "recorder_listen": ["127.0.0.1", 9095]}
    own = copy.deepcopy(data)
    own["monitoring"]["webhook_url"] = "https://pager.example.com/hook"
    assert view.alertmanager_view(own)["webhook_url"] == "https://pager.example.com/hook"
    assert view.alertmanager_view(own)["recorder"] is False


def test_prometheus_and_the_dashboard_for_the_control_machine(data):
    assert view.prometheus_url(data) == "http://10.77.0.40:9090"
    assert view.dashboard_url(data) == "http://10.77.0.40:3000/"
    srv = view.monitoring_server_view(data, "mon-01")
    assert "--storage.tsdb.retention.time=15d" in srv["prometheus_args"]
    assert srv["alertmanager_args"].endswith("--cluster.listen-address=")  # no gossip port
    none = copy.deepcopy(data)
    none["topology"]["hosts"].pop("mon-01")
    assert view.prometheus_url(none) is None and view.dashboard_url(none) is None
    # without a monitoring host: no exporter anywhere, no monitor login
    assert "monitoring.exporters" not in view.host_states(none["topology"], "db-01")
    assert "users.monitor.password" not in view.secrets_for(["db"], none)


def test_connection_limits_hold_ten_thousand_clients_on_each_port(data):
    """Issue 14 item 4: a storm of clients waits in queues instead of being refused."""
    defaults = copy.deepcopy(data)
    defaults["haproxy"]["maxconn"] = model.HAProxy().maxconn  # the lab's is lower (pillar/lab.yaml)
    b = view.haproxy_backends(defaults)
    assert (b["port_maxconn"], b["global_maxconn"], b["nofile"]) == (10000, 10100, 21224)
    assert view.haproxy_backends(data)["port_maxconn"] == 9000
    assert b["pooler_maxconn"] == data["pgbouncer"]["max_client_conn"] == 10000  # one HAProxy host
    # two HAProxy hosts share each pooler's clients
    two = copy.deepcopy(data)
    two["topology"]["hosts"]["db-01"]["roles"] = ["db", "haproxy"]
    assert view.haproxy_backends(two)["pooler_maxconn"] == 5000
    # one descriptor per client and server connection, and 1024 to spare
    assert view.pgbouncer_nofile(data) == 10000 + 20 * 2 * 4 + 1024


def test_sysctl_merges_the_roles_of_the_host(data):
    assert view.host_sysctl(data, "app-01") == data["sysctl"]["haproxy"]
    assert view.host_sysctl(data, "db-01")["net.ipv4.tcp_max_syn_backlog"] == 4096
    assert view.host_sysctl(data, "jump-01") == {}
    mixed = copy.deepcopy(data)
    mixed["topology"]["hosts"]["db-01"]["roles"] = ["db", "haproxy"]
    merged = view.host_sysctl(mixed, "db-01")
    assert merged["vm.swappiness"] == 1 and merged["net.core.somaxconn"] == 4096


def test_repository_keys_are_read_on_the_control_machine_into_debian_hosts_pillars(tmp_path):
    key = tmp_path / "shop.asc"
    key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n")
    data = config.load()
    data["packages"]["apt_keys"] = {"shop": str(key)}
    pillar = view.pillar_for("db-01", data)["halite"]
    assert pillar["apt_keys"] == {"shop": {"path": "/etc/apt/keyrings/shop.asc", "text": key.read_text()}}
    key.write_text("not a key\n")
    with pytest.raises(model.ConfigError) as info:
        view.pillar_for("db-01", data)
    assert info.value.problems == [("packages.apt_keys.shop", f"{key} holds no armored OpenPGP public key "
                                                              "(gpg --armor --export)")]
    key.unlink()
    with pytest.raises(model.ConfigError) as info:
        view.pillar_for("db-01", data)
    assert info.value.problems == [("packages.apt_keys.shop", f"{key} cannot be read: No such file or directory")]
