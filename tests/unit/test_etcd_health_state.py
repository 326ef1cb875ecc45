"""Unit tests for _states/etcd_health.py, with ``etcd_cluster.health`` mocked."""
from unittest.mock import MagicMock, patch

import etcd_health
import pytest
from salt.exceptions import CommandExecutionError
from conftest import salt_utils


def member(name, member_id, started=True):
    return {
        "id": member_id,
        "name": name if started else "",
        "peer_urls": [f"http://{name}:2380"],
        "client_urls": [f"http://{name}:2379"] if started else [],
        "is_learner": False,
        "started": started,
    }


MEMBERS = [member("db-01", "8e9e05c52164694d"), member("db-02", "91bc3c398fb3c146"), member("db-03", "fd422379fda50e48")]


def seen(**over):
    data = {
        "healthy": True,
        "endpoint": "http://127.0.0.1:2379",
        "leader": "db-02",
        "leader_id": "91bc3c398fb3c146",
        "members": MEMBERS,
        "started": 3,
        "problems": [],
    }
    data.update(over)
    return data


@pytest.fixture
def configure_loader_modules():
    return {etcd_health: {"__salt__": {"etcd_cluster.health": MagicMock()}, "__opts__": {"test": False},
                         "__utils__": salt_utils()}}


@pytest.fixture
def clock(clock):  # pylint: disable=redefined-outer-name
    with patch.object(etcd_health, "time", clock):
        yield clock


def test_virtual():
    assert etcd_health.__virtual__() == "etcd_health"


def test_healthy_at_once(clock):
    health = MagicMock(return_value=seen())
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}):
        ret = etcd_health.healthy("etcd-gate", members=3, port=2379)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert "leader db-02" in ret["comment"]
    health.assert_called_once_with(port=2379)
    assert clock.sleeps == []


def test_healthy_waits_for_third_member_and_leader(clock):
    health = MagicMock(
        side_effect=[
            CommandExecutionError("etcd GET http://127.0.0.1:2379/health is unreachable"),
            seen(healthy=False, leader=None, started=2, members=MEMBERS[:2] + [member("db-03", "fd422379fda50e48", started=False)],
                 problems=["the local member knows no leader"]),
            seen(),
        ]
    )
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}):
        ret = etcd_health.healthy("etcd-gate", members=3, timeout=30, interval=2)
    assert ret["result"] is True
    assert health.call_count == 3
    assert clock.sleeps == [2, 2]


def test_healthy_times_out_showing_members(clock):
    members = MEMBERS[:2] + [member("db-03", "fd422379fda50e48", started=False)]
    health = MagicMock(return_value=seen(started=2, members=members))
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}):
        ret = etcd_health.healthy("etcd-gate", members=3, timeout=5, interval=2)
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "Timed out after 5s waiting for etcd healthy with 3 started members and a leader" in ret["comment"]
    assert "Last seen: 2 started voting members, expected 3" in ret["comment"]
    assert "db-01 id=8e9e05c52164694d started peer=http://db-01:2380 client=http://db-01:2379" in ret["comment"]
    assert "(no name) id=fd422379fda50e48 unstarted peer=http://db-03:2380 client=-" in ret["comment"]
    assert clock.sleeps == [2, 2, 1]


def test_healthy_unhealthy_without_reason(clock):
    health = MagicMock(return_value=seen(healthy=False, problems=[]))
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}):
        ret = etcd_health.healthy("etcd-gate", timeout=0)
    assert ret["result"] is False
    assert "etcd reports unhealthy" in ret["comment"]
    assert health.call_count == 1


def test_healthy_test_mode_looks_once_and_does_not_wait(clock):
    health = MagicMock(return_value={"healthy": False, "leader": None, "members": [], "started": 0, "problems": ["down"]})
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}), patch.dict(etcd_health.__opts__, {"test": True}):
        ret = etcd_health.healthy("etcd-gate", members=5, timeout=180)
    assert ret["result"] is None
    assert ret["changes"] == {}
    assert ret["comment"].startswith("Would wait up to 180s for etcd healthy with 5 started members and a leader (now: ")
    health.assert_called_once()
    assert clock.sleeps == []


def test_healthy_test_mode_on_a_healthy_cluster_has_nothing_to_do(clock):
    members = [{"name": f"db-0{i}", "started": True, "is_learner": False} for i in (1, 2, 3)]
    health = MagicMock(return_value={"healthy": True, "leader": "db-01", "members": members, "started": 3, "problems": []})
    with patch.dict(etcd_health.__salt__, {"etcd_cluster.health": health}), patch.dict(etcd_health.__opts__, {"test": True}):
        ret = etcd_health.healthy("etcd-gate", members=3, timeout=180)
    assert ret["result"] is True, ret
    assert ret["changes"] == {}
    health.assert_called_once()
