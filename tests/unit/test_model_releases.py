"""The typed model (halite/model.py), releases: each host's OS release and the
PostgreSQL versions that release ships, checked before any host changes."""
import copy

import pytest

from halite import config

TRIXIE = config.PILLAR_DIR / "topology-trixie.yaml"
TRIXIE_SETTINGS = config.PILLAR_DIR / "trixie.yaml"


from conftest import good, problems  # noqa: E402,F401  (shared: the shipped description, its problems)


def test_release_defaults_to_bookworm(good):
    topo, settings = good
    assert all(h["os_release"] is None for h in topo["hosts"].values())
    assert settings["legacy"]["version"] is None


def test_db_hosts_on_trixie_need_postgresql_17(good):
    topo, settings = copy.deepcopy(good)
    for h in ("db-01", "db-02", "db-03"):
        topo["hosts"][h]["os_release"] = "trixie"
    assert problems(topo, settings) == [
        ("postgresql.version", "is 15; db-01, db-02, db-03 run Debian 13 (trixie), which ships PostgreSQL 17 only")]
    settings["postgresql"]["version"] = 17
    config.load(copy.deepcopy(topo), copy.deepcopy(settings))


def test_the_legacy_server_keeps_its_releases_postgresql(good):
    topo, settings = copy.deepcopy(good)
    for h in ("db-01", "db-02", "db-03"):
        topo["hosts"][h]["os_release"] = "trixie"
    settings["postgresql"]["version"] = 17
    settings["legacy"]["version"] = 17  # not in bookworm, where app-01 runs
    assert problems(topo, settings) == [
        ("legacy.version", "is 17; app-01 runs Debian 12 (bookworm), which ships PostgreSQL 15 only")]


def test_the_legacy_server_on_trixie_defaults_to_17(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["app-01"]["os_release"] = "trixie"
    # cluster on bookworm (15), legacy on trixie (17): allowed by the model, its default is trixie's
    data = config.load(copy.deepcopy(topo), copy.deepcopy(settings))
    assert data["legacy"]["version"] is None


def test_a_release_of_the_other_family_is_refused(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-01"]["os_release"] = 9
    topo["hosts"]["app-01"]["os_family"] = "RedHat"
    topo["hosts"]["app-01"]["os_release"] = "trixie"
    assert problems(topo, settings) == [
        ("topology.hosts.db-01.os_release", "is 9; a Debian host runs 'bookworm' or 'trixie'"),
        ("topology.hosts.app-01.os_release", "is 'trixie' (a string); a RedHat host runs 8 or 9")]


def test_an_unknown_release_names_the_known_ones(good):
    topo, settings = copy.deepcopy(good)
    topo["hosts"]["db-01"]["os_release"] = "bullseye"
    (key, msg), = problems(topo, settings)
    assert key == "topology.hosts.db-01.os_release"
    assert "'bookworm'" in msg and "'trixie'" in msg


def test_redhat_hosts_take_any_pgdg_version(good):
    topo, settings = copy.deepcopy(good)
    for spec in topo["hosts"].values():
        spec["os_family"] = "RedHat"
    settings["postgresql"]["version"] = 16
    config.load(copy.deepcopy(topo), copy.deepcopy(settings))


def test_the_trixie_topology_checks_with_its_settings():
    assert config.check(topology_file=TRIXIE, settings_files=config.settings_paths() + [TRIXIE_SETTINGS]) == []
    data = config.load(topology=config.read_yaml(TRIXIE),
                       settings=config.deep_merge(config.read_yaml(config.PILLAR_DIR / "lab.yaml"),
                                                  config.read_yaml(TRIXIE_SETTINGS)))
    releases = {h: spec["os_release"] for h, spec in data["topology"]["hosts"].items()}
    assert releases == {"jump-01": "trixie", "db-01": "trixie", "db-02": "trixie", "db-03": "trixie",
                        "app-01": "bookworm", "backup-01": "trixie"}
    assert data["postgresql"]["version"] == 17


def test_the_trixie_topology_without_its_settings_says_why():
    probs = config.check(topology_file=TRIXIE, settings_files=config.settings_paths())
    assert probs == [("postgresql.version",
                      "is 15; db-01, db-02, db-03 run Debian 13 (trixie), which ships PostgreSQL 17 only")]
