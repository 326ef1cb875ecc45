"""Unit tests for _states/patroni_cluster.py.

``healthy`` is tested against a mocked ``patroni.health``; ``dynamic_config``
through the real patroni module, with a fake Patroni REST API underneath, so
the PATCH body that would reach Patroni is checked too.
"""
import copy
from unittest.mock import MagicMock, patch

import patroni
import patroni_cluster
import pytest
import salt.modules.config
from salt.exceptions import CommandExecutionError
from conftest import salt_utils

API = "https://127.0.0.1:8008"
PILLAR = {"halite": {"patroni": {"restapi": {"username": "patroni", "password": "s3cret"}}}}

# GET /config as Patroni answers it: parameters may come back as strings.
CONFIG = {
    "ttl": 30,
    "loop_wait": 10,
    "retry_timeout": 10,
    "maximum_lag_on_failover": 1048576,
    "synchronous_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {"max_connections": "100", "wal_level": "logical", "hot_standby": "on"},
    },
}
DESIRED = {"ttl": 20, "loop_wait": 2, "postgresql": {"parameters": {"max_connections": 200}}}
PENDING = {
    "members": [
        {"name": "db-01", "role": "leader", "state": "running", "timeline": 1, "pending_restart": True},
        {"name": "db-02", "role": "sync_standby", "state": "streaming", "timeline": 1, "lag": 0, "pending_restart": True},
        {"name": "db-03", "role": "replica", "state": "streaming", "timeline": 1, "lag": 0},
    ]
}


def healthy_seen(**over):
    seen = {
        "healthy": True, "leader": "db-01", "members": 3, "replicas_streaming": 2,
        "max_lag": 0, "problems": [],
    }
    seen.update(over)
    return seen


@pytest.fixture
def configure_loader_modules():
    return {
        salt.modules.config: {"__pillar__": PILLAR, "__opts__": {}, "__grains__": {}},
        patroni: {"__salt__": {"config.get": salt.modules.config.get}, "__utils__": salt_utils()},
        patroni_cluster: {
            "__salt__": {
                "patroni.health": MagicMock(),
                "patroni.table": MagicMock(),
                "patroni.config": patroni.config,
                "patroni.patch_config": patroni.patch_config,
                "patroni.pending_restart": patroni.pending_restart,
            },
            "__opts__": {"test": False},
            "__utils__": salt_utils(),
        },
    }


@pytest.fixture
def clock(clock):  # pylint: disable=redefined-outer-name
    """conftest's fake clock, as ``time`` in the state and the module."""
    with patch.object(patroni_cluster, "time", clock), patch.object(patroni, "time", clock):
        yield clock


@pytest.fixture
def api(fake_http, clock):
    with patch.object(patroni._OPENER, "open", fake_http.open), patch.dict(patroni.__utils__, {"halite_http.opener": fake_http.opener}):
        yield fake_http


def test_virtual():
    assert patroni_cluster.__virtual__() == "patroni_cluster"


# ----------------------------------------------------------------- healthy


def test_healthy_at_once(clock):
    health = MagicMock(return_value=healthy_seen())
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health}):
        ret = patroni_cluster.healthy("gate", members=3, max_lag=1024, port=8009)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert "leader db-01" in ret["comment"]
    health.assert_called_once_with(members=3, max_lag=1024, port=8009)
    assert clock.sleeps == []


def test_healthy_waits_through_errors_and_problems(clock):
    health = MagicMock(
        side_effect=[
            CommandExecutionError("Patroni REST API GET https://127.0.0.1:8008/cluster is unreachable"),
            healthy_seen(healthy=False, problems=["db-03 is starting, not streaming"]),
            healthy_seen(),
        ]
    )
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health}):
        ret = patroni_cluster.healthy("gate", timeout=60, interval=3)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert health.call_count == 3
    assert clock.sleeps == [3, 3]


def test_healthy_times_out_with_what_it_saw(clock):
    health = MagicMock(return_value=healthy_seen(healthy=False, problems=["db-03 lags 2000000 bytes, more than 1048576"]))
    table = MagicMock(return_value="Member  Host  Role  State  TL  Lag\ndb-03  10.0.0.13  replica  streaming  1  2000000")
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health, "patroni.table": table}):
        ret = patroni_cluster.healthy("gate", members=3, timeout=10, interval=3)
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "Timed out after 10s" in ret["comment"]
    assert "2 streaming replica(s)" in ret["comment"]
    assert "db-03 lags 2000000 bytes" in ret["comment"]
    assert "db-03  10.0.0.13  replica" in ret["comment"]
    # Looks at 0, 3, 6, 9 and a last one at the deadline (10).
    assert clock.sleeps == [3, 3, 3, 1]
    assert health.call_count == 5


def test_healthy_timeout_when_table_fails_too(clock):
    failure = CommandExecutionError("Patroni REST API GET https://127.0.0.1:8008/cluster is unreachable")
    health = MagicMock(side_effect=failure)
    table = MagicMock(side_effect=failure)
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health, "patroni.table": table}):
        ret = patroni_cluster.healthy("gate", timeout=2, interval=1)
    assert ret["result"] is False
    assert "Last seen: Patroni REST API GET https://127.0.0.1:8008/cluster is unreachable" in ret["comment"]
    assert "(no member table:" in ret["comment"]


def test_healthy_test_mode_looks_once_and_does_not_wait(clock):
    health = MagicMock(return_value={"healthy": False, "problems": ["no leader"]})
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health}), patch.dict(
        patroni_cluster.__opts__, {"test": True}
    ):
        ret = patroni_cluster.healthy("gate", members=3, timeout=300)
    assert ret["result"] is None
    assert ret["changes"] == {}
    assert "Would wait up to 300s" in ret["comment"] and "no leader" in ret["comment"]
    health.assert_called_once()
    assert clock.sleeps == []


def test_healthy_test_mode_on_a_healthy_cluster_has_nothing_to_do(clock):
    health = MagicMock(return_value={"healthy": True, "leader": "db-01", "replicas_streaming": 2, "max_lag": 0, "problems": []})
    with patch.dict(patroni_cluster.__salt__, {"patroni.health": health}), patch.dict(
        patroni_cluster.__opts__, {"test": True}
    ):
        ret = patroni_cluster.healthy("gate", members=3, timeout=300)
    assert ret["result"] is True and ret["changes"] == {}
    assert clock.sleeps == []


# ---------------------------------------------------------- dynamic_config


def test_dynamic_config_patches_only_the_difference(api, clock):
    after = copy.deepcopy(CONFIG)
    after.update(ttl=20, loop_wait=2)
    after["postgresql"]["parameters"]["max_connections"] = "200"
    api.route("GET", f"{API}/config", (200, CONFIG), (200, after))
    api.route("PATCH", f"{API}/config", (200, after))
    api.route("GET", f"{API}/cluster", (200, PENDING))

    ret = patroni_cluster.dynamic_config("patroni-dynamic-config", DESIRED)

    assert ret["result"] is True
    assert ret["changes"] == {
        "ttl": {"old": 30, "new": 20},
        "loop_wait": {"old": 10, "new": 2},
        "postgresql.parameters.max_connections": {"old": "100", "new": 200},
    }
    patches = api.requests("PATCH", f"{API}/config")
    assert len(patches) == 1
    assert patches[0]["body"] == {"ttl": 20, "loop_wait": 2, "postgresql": {"parameters": {"max_connections": 200}}}
    assert patches[0]["headers"]["Authorization"].startswith("Basic ")
    assert "Members pending restart: db-01, db-02." in ret["comment"]
    # A PostgreSQL change: one HA loop (new loop_wait 2) plus a second, before asking.
    assert clock.sleeps == [3]


def test_dynamic_config_test_mode_patches_nothing(api):
    api.route("GET", f"{API}/config", (200, CONFIG))
    with patch.dict(patroni_cluster.__opts__, {"test": True}):
        ret = patroni_cluster.dynamic_config("patroni-dynamic-config", DESIRED)
    assert ret["result"] is None
    assert ret["changes"] == {
        "ttl": {"old": 30, "new": 20},
        "loop_wait": {"old": 10, "new": 2},
        "postgresql.parameters.max_connections": {"old": "100", "new": 200},
    }
    assert "Would change" in ret["comment"]
    assert [c["method"] for c in api.calls] == ["GET"]


@pytest.mark.parametrize("test_mode", [False, True])
def test_dynamic_config_already_converged(api, test_mode):
    # "100" from Patroni equals 100 desired; True equals True; other keys are not looked at.
    api.route("GET", f"{API}/config", (200, CONFIG))
    desired = {"ttl": 30, "synchronous_mode": True, "postgresql": {"parameters": {"max_connections": 100}}}
    with patch.dict(patroni_cluster.__opts__, {"test": test_mode}):
        ret = patroni_cluster.dynamic_config("patroni-dynamic-config", desired)
    assert ret == {
        "name": "patroni-dynamic-config",
        "changes": {},
        "result": True,
        "comment": "Patroni dynamic configuration is already as desired",
    }
    assert [c["method"] for c in api.calls] == ["GET"]


def test_dynamic_config_no_restart_question_wait_without_postgresql_change(api, clock):
    after = dict(CONFIG, ttl=20)
    api.route("GET", f"{API}/config", (200, CONFIG), (200, after))
    api.route("PATCH", f"{API}/config", (200, after))
    api.route("GET", f"{API}/cluster", (200, {"members": PENDING["members"][2:]}))
    ret = patroni_cluster.dynamic_config("cfg", {"ttl": 20})
    assert ret["result"] is True
    assert ret["changes"] == {"ttl": {"old": 30, "new": 20}}
    assert "No member is pending a restart." in ret["comment"]
    assert clock.sleeps == []


def test_dynamic_config_new_key_and_removal(api, clock):
    after = copy.deepcopy(CONFIG)
    after["failsafe_mode"] = True
    del after["maximum_lag_on_failover"]
    api.route("GET", f"{API}/config", (200, CONFIG), (200, after))
    api.route("PATCH", f"{API}/config", (200, after))
    api.route("GET", f"{API}/cluster", (200, {"members": []}))
    ret = patroni_cluster.dynamic_config("cfg", {"failsafe_mode": True, "maximum_lag_on_failover": None})
    assert ret["result"] is True
    assert ret["changes"] == {
        "failsafe_mode": {"old": None, "new": True},
        "maximum_lag_on_failover": {"old": 1048576, "new": None},
    }
    assert api.requests("PATCH", f"{API}/config")[0]["body"] == {"failsafe_mode": True, "maximum_lag_on_failover": None}


def test_dynamic_config_bool_against_strings(api):
    # Booleans match "true"/"false" in any case (not str(True) alone), never 1 or 0.
    config = dict(CONFIG, synchronous_mode="True", failsafe_mode=1)
    api.route("GET", f"{API}/config", (200, config))
    with patch.dict(patroni_cluster.__opts__, {"test": True}):
        ret = patroni_cluster.dynamic_config("cfg", {"synchronous_mode": True, "failsafe_mode": True})
    assert ret["changes"] == {"failsafe_mode": {"old": 1, "new": True}}


def test_dynamic_config_verification_fails(api, clock):
    api.route("GET", f"{API}/config", (200, CONFIG))  # the re-read still shows ttl 30
    api.route("PATCH", f"{API}/config", (200, CONFIG))
    ret = patroni_cluster.dynamic_config("cfg", {"ttl": 20})
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "still shows ttl=30" in ret["comment"]


def test_dynamic_config_patch_refused(api):
    api.route("GET", f"{API}/config", (200, CONFIG))
    api.route("PATCH", f"{API}/config", (401, "no auth header received"))
    ret = patroni_cluster.dynamic_config("cfg", {"ttl": 20})
    assert ret["result"] is False
    assert "Patching Patroni's dynamic configuration (ttl) failed" in ret["comment"]
    assert "HTTP 401" in ret["comment"]


def test_dynamic_config_patroni_down(api):
    ret = patroni_cluster.dynamic_config("cfg", {"ttl": 20})
    assert ret["result"] is False
    assert f"Cannot read Patroni's dynamic configuration: Patroni REST API GET {API}/config is unreachable" in ret["comment"]


def test_dynamic_config_refuses_empty():
    ret = patroni_cluster.dynamic_config("cfg", {})
    assert ret["result"] is False
    assert "non-empty mapping" in ret["comment"]


@pytest.mark.parametrize(
    "want,have,same",
    [
        (200, "200", True),
        ("200", 200, True),
        (0.9, "0.9", True),
        ("128MB", "128MB", True),
        (True, True, True),
        (True, "true", True),
        (True, "True", True),
        (False, "FALSE", True),
        (False, "true", False),
        (True, 1, False),
        (False, 0, False),
        (200, "201", False),
        ([1, 2], [1, 2], True),
        (None, None, True),
        (None, 5, False),
    ],
)
def test_same(want, have, same):
    assert patroni_cluster._same(want, have) is same
