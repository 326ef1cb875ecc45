"""Reading, merging and checking the description (halite/config.py): a bad
input stops config.load with one line per problem, before anything touches a
host; the pillar and the roster follow the checked description. Each bad value
the model refuses, case by case, is in test_model.py."""
import copy

import pytest

from halite import config
from halite.roster import LAB_SSH_DIR, roster


from conftest import good  # noqa: E402,F401  (the shipped description, shared with the model tests)


def load(topo, settings):
    return config.load(copy.deepcopy(topo), copy.deepcopy(settings))


def expect(topo, settings, key, words):
    with pytest.raises(config.ConfigError) as info:
        load(topo, settings)
    assert info.value.key == key, str(info.value)
    assert words in info.value.problem, str(info.value)


def test_the_shipped_description_is_valid(good):
    data = load(*good)
    assert config.hosts_with_role(data["topology"], "db") == ["db-01", "db-02", "db-03"]
    # the profile is merged under dcs, explicit dcs keys win
    assert data["patroni"]["dcs"]["ttl"] == 20
    assert data["patroni"]["dcs"]["synchronous_mode"] is True


def test_host_without_address(good):
    topo, settings = copy.deepcopy(good)
    del topo["hosts"]["db-02"]["addresses"]
    expect(topo, settings, "topology.hosts.db-02.addresses", "is missing")


def test_duplicate_name_differing_in_case(good):
    # host names are lower-case DNS labels, so two names differing in case cannot both be given
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["DB-01"] = copy.deepcopy(topo["hosts"]["db-01"])
    topo["hosts"]["DB-01"]["addresses"] = {"private": "10.77.1.99"}
    expect(topo, settings, "topology.hosts", "is 'DB-01'; a host name is a DNS label: lower-case letters")


def test_every_profile_is_checked_not_only_the_chosen_one(good):
    topo, settings = copy.deepcopy(good)
    settings["patroni"]["profiles"]["too-fast"] = {"ttl": 20, "loop_wait": 8, "retry_timeout": 7}
    expect(topo, settings, "patroni.profiles.too-fast.ttl", "below loop_wait + 2 x retry_timeout = 22")
    settings["patroni"]["profiles"]["too-fast"] = {"ttl": 15}
    expect(topo, settings, "patroni.profiles.too-fast.ttl", "Patroni's minimum is 20")
    settings["patroni"]["profiles"]["too-fast"] = "fast"
    expect(topo, settings, "patroni.profiles.too-fast", "is 'fast' (a string); expected a mapping")
    del settings["patroni"]["profiles"]["too-fast"]
    settings["patroni"]["profiles"]["halite"] = "fast"  # the chosen one: a clear error, not a TypeError
    expect(topo, settings, "patroni.profiles.halite", "is 'fast' (a string); expected a mapping")


def test_every_problem_comes_at_once_the_first_also_as_key_and_problem(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-01"]["os_family"] = "Solaris"
    settings["postgresql"]["version"] = 11
    settings["users"]["replication"]["password"] = ""
    with pytest.raises(config.ConfigError) as info:
        load(topo, settings)
    assert [k for k, _ in info.value.problems] == [
        "topology.hosts.db-01.os_family", "postgresql.version", "users.replication.password"], str(info.value)
    assert (info.value.key, info.value.problem) == info.value.problems[0]
    assert str(info.value).splitlines()[1] == "postgresql.version: is 11; allowed: 13, 14, 15, 16, 17 or 18"


def test_check_lists_the_problems_of_files(tmp_path):
    topology = config.PILLAR_DIR / "topology.yaml"
    secrets = config.PILLAR_DIR / "lab.yaml"
    bad = tmp_path / "local.yaml"
    bad.write_text("pgbouncer:\n  pool_mode: sometimes\n")
    assert config.check(topology, [secrets]) == []
    assert [k for k, _ in config.check(topology, [secrets, bad])] == ["pgbouncer.pool_mode"]
    bad.write_text("etcd:\n  peer_port: 2379\n")
    assert config.check(topology, [secrets, bad]) == [
        ("etcd.peer_port", "port 2379 is also etcd.client_port on hosts db-01, db-02, db-03")]


@pytest.mark.parametrize("text,words", [
    ("pgbouncer: [unclosed\n", "is not valid YAML"),
    ("- a list\n", "must hold a mapping at its top level"),
])
def test_a_settings_file_that_is_not_a_mapping_is_named(tmp_path, text, words):
    path = tmp_path / "local.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.load(settings_files=[path])
    assert info.value.key == str(path) and words in info.value.problem


def test_the_topology_belongs_in_its_own_file(good):
    topo, settings = copy.deepcopy(good)
    with pytest.raises(config.ConfigError) as info:
        config.load(topo, {**settings, "topology": topo})
    assert info.value.key == "topology" and "belongs in the topology file" in info.value.problem


def test_firewall_rules_follow_the_topology(good):
    data = load(*good)
    db = {r["name"]: r for r in config.firewall_rules(data, "db-01")}
    jump = {r["name"]: r for r in config.firewall_rules(data, "jump-01")}
    app = {r["name"]: r for r in config.firewall_rules(data, "app-01")}
    # SSH to db and app hosts only from the jump host; to the jump host only from the control machine
    assert db["ssh"]["sources"] == ["10.77.0.10", "10.77.1.10"]
    assert app["ssh"]["sources"] == ["10.77.0.10", "10.77.1.10"]
    assert jump["ssh"]["sources"] == ["10.77.0.1"]
    # the jump host: SSH, and node-exporter for the monitoring host alone
    assert set(jump) == {"ssh", "node-exporter"}
    assert jump["node-exporter"]["sources"] == ["10.77.0.40", "10.77.1.40"]
    assert jump["node-exporter"]["addresses"] == ["10.77.1.10"]  # where it listens: the edge stays shut
    assert db["postgres-exporter"]["sources"] == db["pgbouncer-exporter"]["sources"] == ["10.77.0.40", "10.77.1.40"]
    # etcd only from db hosts; HAProxy ports only on the haproxy host
    assert db["etcd-peer"]["sources"] == ["10.77.1.11", "10.77.1.12", "10.77.1.13"]
    assert "haproxy" not in db and app["haproxy"]["ports"] == [5000, 5001]
    # the stats page (and HAProxy's /metrics): from the jump and monitoring hosts, to the private address only
    assert app["haproxy-stats"] == {"name": "haproxy-stats", "ports": [7000],
                                    "sources": ["10.77.0.10", "10.77.0.40", "10.77.1.10", "10.77.1.40"],
                                    "addresses": ["10.77.1.20"]}
    assert "10.77.0.1" in app["haproxy"]["sources"]


def test_pillar_gives_each_host_its_view(good):
    pillar = config.pillar_for("db-02", load(*good))["halite"]
    assert pillar["host"]["address"] == "10.77.1.12"
    assert pillar["host"]["states"] == ["tls", "etcd", "postgresql", "pgbackrest", "patroni", "pgbouncer",
                                        "monitoring.exporters"]
    assert pillar["roles"]["haproxy"] == ["app-01"]
    assert "host" not in config.pillar_for("control", load(*good))["halite"]


def test_roster_reaches_everything_but_the_jump_host_through_it(good):
    r = roster(load(*good)["topology"])
    assert r["jump-01"]["host"] == "10.77.0.10"
    assert not any("ProxyCommand" in o for o in r["jump-01"]["ssh_options"])
    for host in ("db-01", "db-02", "db-03", "app-01"):
        opts = " ".join(r[host]["ssh_options"])
        assert f"ProxyCommand=ssh -i {LAB_SSH_DIR}/id_ed25519" in opts and "-W %h:%p admin@10.77.0.10" in opts
        assert "StrictHostKeyChecking=yes" in opts and "StrictHostKeyChecking=no" not in opts
    assert r["db-01"]["host"] == "10.77.1.11"


def test_roster_hands_db_hosts_the_api_settings_as_minion_opts(good):
    data = load(*good)
    r = roster(data["topology"], data=data)
    assert r["db-01"]["minion_opts"]["halite"]["patroni"]["restapi"]["username"] == "patroni"
    assert r["db-01"]["minion_opts"]["halite"]["etcd"]["client_port"] == 2379
    assert "minion_opts" not in r["jump-01"] and "minion_opts" not in r["app-01"]
    # direct calls speak TLS as the pillar says, with the files the tls state lays down
    opts = r["db-01"]["minion_opts"]["halite"]
    assert opts["tls_on"]["etcd"] is True and opts["tls_on"]["patroni_api"] is True
    assert opts["tls_paths"] == {"dir": "/etc/halite/tls", "ca": "/etc/halite/tls/ca.crt",
                                 "cert": "/etc/halite/tls/host.crt", "key": "/etc/halite/tls/host.key"}
    data["tls"]["unsafe_plaintext"] = ["etcd"]
    opts = roster(data["topology"], data=data)["db-01"]["minion_opts"]["halite"]
    assert opts["tls_on"]["etcd"] is False and opts["tls_on"]["patroni_api"] is True
