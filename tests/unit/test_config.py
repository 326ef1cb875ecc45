import base64
"""Validation of the topology and settings: each bad input stops with one
message naming the key, before anything touches a host."""
import copy

import pytest

from halite import config
from halite.roster import roster


@pytest.fixture(scope="module")
def good():
    data = config.load()
    topo = data.pop("topology")
    return topo, data


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
    expect(topo, settings, "topology.hosts.db-02.addresses", "every host needs an address")


def test_duplicate_address(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-03"]["addresses"]["private"] = topo["hosts"]["db-01"]["addresses"]["private"]
    expect(topo, settings, "topology.hosts.db-03.addresses.private", "already the address of db-01")


def test_duplicate_name_differing_in_case(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["DB-01"] = copy.deepcopy(topo["hosts"]["db-01"])
    topo["hosts"]["DB-01"]["addresses"] = {"private": "10.77.1.99"}
    expect(topo, settings, "topology.hosts.DB-01", "duplicate host name")


def test_address_outside_its_network(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-01"]["addresses"]["private"] = "10.99.0.1"
    expect(topo, settings, "topology.hosts.db-01.addresses.private", "outside network private")


def test_role_with_no_host(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["app-01"]["roles"] = ["app"]
    expect(topo, settings, "topology.hosts (role haproxy)", "no host has the role 'haproxy'")


@pytest.mark.parametrize("count", [2, 4])
def test_etcd_member_count_even_or_small(good, count):
    topo, settings = copy.deepcopy(good)
    dbs = [h for h in topo["hosts"] if h.startswith("db-")]
    for i, host in enumerate(dbs[count:] if count < 3 else []):
        del topo["hosts"][host]
    if count == 4:
        topo["hosts"]["db-04"] = {"roles": ["db"], "addresses": {"private": "10.77.1.14"}}
    expect(topo, settings, "topology.hosts (role db: etcd members)", f"the topology gives {count}")


def test_unknown_os_family(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-01"]["os_family"] = "Solaris"
    expect(topo, settings, "topology.hosts.db-01.os_family", "unknown OS family 'Solaris'")


def test_ttl_below_loop_wait_plus_two_retry_timeouts(good):
    topo, settings = copy.deepcopy(good)
    settings["patroni"]["dcs"].update({"ttl": 24, "loop_wait": 10, "retry_timeout": 8})
    expect(topo, settings, "patroni.dcs.ttl", "below loop_wait + 2 x retry_timeout = 26")


def test_every_profile_is_checked_not_only_the_chosen_one(good):
    topo, settings = copy.deepcopy(good)
    settings["patroni"]["profiles"]["too-fast"] = {"ttl": 20, "loop_wait": 8, "retry_timeout": 7}
    expect(topo, settings, "patroni.profiles.too-fast.ttl", "below loop_wait + 2 x retry_timeout = 22")
    settings["patroni"]["profiles"]["too-fast"] = {"ttl": 15}
    expect(topo, settings, "patroni.profiles.too-fast.ttl", "Patroni's minimum is 20")
    settings["patroni"]["profiles"]["too-fast"] = "fast"
    expect(topo, settings, "patroni.profiles.too-fast", "a mapping of timing values was expected")
    del settings["patroni"]["profiles"]["too-fast"]
    settings["patroni"]["profiles"]["halite"] = "fast"  # the chosen one: a clear error, not a TypeError
    expect(topo, settings, "patroni.profiles.halite", "a mapping of timing values was expected")


@pytest.mark.parametrize("key,value,minimum", [("ttl", 19, 20), ("loop_wait", 0, 1), ("retry_timeout", 2, 3)])
def test_values_under_patroni_minimums(good, key, value, minimum):
    topo, settings = copy.deepcopy(good)
    settings["patroni"]["dcs"][key] = value
    expect(topo, settings, f"patroni.dcs.{key}", f"Patroni's minimum is {minimum}")


def test_synchronous_mode_needs_a_second_member(good):
    topo, settings = copy.deepcopy(good)
    # a topology with a single db host fails the etcd rule first; check the rule itself
    data = load(topo, settings)
    data["topology"]["hosts"] = {k: v for k, v in data["topology"]["hosts"].items() if k != "db-02" and k != "db-03"}
    with pytest.raises(config.ConfigError) as info:
        config.validate_settings(data)
    assert info.value.key == "patroni.dcs.synchronous_mode"


@pytest.mark.parametrize("password", ["", None])
def test_missing_or_empty_password(good, password):
    topo, settings = copy.deepcopy(good)
    settings["users"]["replication"]["password"] = password
    expect(topo, settings, "users.replication.password", "missing or empty")


def test_unknown_postgresql_version(good):
    topo, settings = copy.deepcopy(good)
    settings["postgresql"]["version"] = 11
    expect(topo, settings, "postgresql.version", "no known binary directory for PostgreSQL 11 on Debian")


def test_unknown_profile(good):
    topo, settings = copy.deepcopy(good)
    settings["patroni"]["profile"] = "turbo"
    expect(topo, settings, "patroni.profile", "unknown profile 'turbo'")


def test_firewall_rules_follow_the_topology(good):
    data = load(*good)
    db = {r["name"]: r for r in config.firewall_rules(data, "db-01")}
    jump = {r["name"]: r for r in config.firewall_rules(data, "jump-01")}
    app = {r["name"]: r for r in config.firewall_rules(data, "app-01")}
    # SSH to db and app hosts only from the jump host; to the jump host only from the control machine
    assert db["ssh"]["sources"] == ["10.77.0.10", "10.77.1.10"]
    assert app["ssh"]["sources"] == ["10.77.0.10", "10.77.1.10"]
    assert jump["ssh"]["sources"] == ["10.77.0.1"]
    assert set(jump) == {"ssh"}
    # etcd only from db hosts; HAProxy ports only on the haproxy host
    assert db["etcd-peer"]["sources"] == ["10.77.1.11", "10.77.1.12", "10.77.1.13"]
    assert "haproxy" not in db and app["haproxy"]["ports"] == [5000, 5001, 7000]
    assert "10.77.0.1" in app["haproxy"]["sources"]


def test_pillar_gives_each_host_its_view(good):
    pillar = config.pillar_for("db-02", load(*good))["halite"]
    assert pillar["host"]["address"] == "10.77.1.12"
    assert pillar["host"]["states"] == ["etcd", "postgresql", "patroni", "pgbouncer"]
    assert pillar["roles"]["haproxy"] == ["app-01"]
    assert "host" not in config.pillar_for("control", load(*good))["halite"]


def test_roster_reaches_everything_but_the_jump_host_through_it(good):
    r = roster(load(*good)["topology"], key="/k", known_hosts="/kh")
    assert r["jump-01"]["host"] == "10.77.0.10"
    assert not any("ProxyCommand" in o for o in r["jump-01"]["ssh_options"])
    for host in ("db-01", "db-02", "db-03", "app-01"):
        opts = " ".join(r[host]["ssh_options"])
        assert "ProxyCommand=ssh -i /k" in opts and "-W %h:%p root@10.77.0.10" in opts
        assert "StrictHostKeyChecking=yes" in opts and "StrictHostKeyChecking=no" not in opts
    assert r["db-01"]["host"] == "10.77.1.11"


def test_roster_hands_db_hosts_the_api_settings_as_minion_opts(good):
    data = load(*good)
    r = roster(data["topology"], key="/k", known_hosts="/kh", data=data)
    assert r["db-01"]["minion_opts"]["halite"]["patroni"]["restapi"]["username"] == "patroni"
    assert r["db-01"]["minion_opts"]["halite"]["etcd"]["client_port"] == 2379
    # the password base64-encoded: salt-ssh's shim would mangle quotes and backslashes (halite.formats)
    restapi = r["db-01"]["minion_opts"]["halite"]["patroni"]["restapi"]
    assert "password" not in restapi
    assert base64.b64decode(restapi["password_b64"]).decode() == data["patroni"]["restapi"]["password"]
    assert "minion_opts" not in r["jump-01"] and "minion_opts" not in r["app-01"]
