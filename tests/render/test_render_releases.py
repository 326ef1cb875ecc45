"""Render the target default lab (pillar/topology-trixie.yaml): the cluster on
Debian 13 with PostgreSQL 17, the old server on Debian 12 with PostgreSQL 15;
and a host whose release is not the topology's stops rendering."""
import json

import pytest

from rendering import REPO, salt_call

TOPOLOGY = REPO / "pillar/topology-trixie.yaml"
SETTINGS = REPO / "pillar/trixie.yaml"
MAJOR = {"jump-01": 13, "db-01": 13, "db-02": 13, "db-03": 13, "app-01": 12}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-releases")


def render(tmp, host, *args, major=None):
    res = salt_call(tmp, host, "Debian", *args, settings=SETTINGS, topology=TOPOLOGY,
                    major=MAJOR[host] if major is None else major)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["local"]


def arg(states: dict, state_id: str, key: str):
    """One argument of a rendered state, e.g. the ``pkgs`` of ``postgresql-packages``."""
    fun = [k for k in states[state_id] if not k.startswith("__")][0]
    return [x for x in states[state_id][fun] if isinstance(x, dict) and key in x][0][key]


@pytest.mark.parametrize("host", list(MAJOR))
def test_highstate_renders_on_each_release(tmp, host):
    states = render(tmp, host, "state.show_highstate")
    assert {"base-nftables-config", "base-sshd-config"} <= set(states)


def test_the_cluster_installs_postgresql_17(tmp):
    states = render(tmp, "db-01", "state.show_sls", "postgresql,patroni.config")
    assert arg(states, "postgresql-packages", "pkgs") == ["postgresql-17", "postgresql-client-17"]
    assert arg(states, "patroni-data-dir", "name") == "/var/lib/postgresql/17/halite"


def test_the_old_server_keeps_postgresql_15(tmp):
    states = render(tmp, "app-01", "state.show_sls", "legacy,haproxy.install")
    assert " 15 legacy" in arg(states, "legacy-cluster-created", "name")
    assert arg(states, "legacy-packages", "pkgs") == ["postgresql-15", "postgresql-client-15"]
    assert arg(states, "legacy-service-running", "name") == "postgresql@15-legacy"
    # HAProxy's round-trip gate: bookworm's psql 15 against the cluster's 17
    assert "postgresql-client-15" in arg(states, "haproxy-packages", "pkgs")


def test_a_host_of_another_release_stops_rendering(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "base", settings=SETTINGS, topology=TOPOLOGY, major=12)
    assert res.returncode != 0
    assert "db-01 runs Debian 12, but the topology says os_release trixie (Debian 13)" in res.stdout + res.stderr
