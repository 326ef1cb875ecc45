"""Unit tests for _modules/etcd_cluster.py: a fake etcd 3.4 gRPC gateway behind the opener."""
from unittest.mock import patch

import etcd_cluster
import pytest
import salt.modules.config
from salt.exceptions import CommandExecutionError, SaltInvocationError
from conftest import salt_utils

PILLAR = {"halite": {"etcd": {"client_port": 22379}}}
ETCD = "https://127.0.0.1:22379"  # port from PILLAR

# uint64 ids as the 3.4 gateway sends them: decimal strings.
ID_1, ID_2, ID_3 = "10276657743932975437", "10501334649042878790", "18249187646912138824"
HEX_1, HEX_2, HEX_3 = (format(int(i), "x") for i in (ID_1, ID_2, ID_3))
HEADER = {"cluster_id": "14841639068965178418", "member_id": ID_1, "revision": "7", "raft_term": "2"}


def member(member_id, name, address):
    return {
        "ID": member_id,
        "name": name,
        "peerURLs": [f"https://{address}:2380"],
        "clientURLs": [f"https://{address}:2379"],
    }


MEMBER_LIST = {
    "header": HEADER,
    "members": [
        member(ID_1, "db-01", "10.0.0.11"),
        member(ID_2, "db-02", "10.0.0.12"),
        member(ID_3, "db-03", "10.0.0.13"),
    ],
}


def status(member_id, leader_id):
    return {
        "header": dict(HEADER, member_id=member_id),
        "version": "3.4.30",
        "dbSize": "24576",
        "leader": leader_id,
        "raftIndex": "42",
        "raftTerm": "2",
        "raftAppliedIndex": "42",
        "dbSizeInUse": "20480",
    }


@pytest.fixture
def configure_loader_modules():
    # Salt's own config.get: minion options, grains, then pillar.
    return {
        etcd_cluster: {"__salt__": {"config.get": salt.modules.config.get}, "__opts__": {}, "__utils__": salt_utils()},
        salt.modules.config: {"__pillar__": PILLAR, "__opts__": {}, "__grains__": {}},
    }


@pytest.fixture
def etcd(fake_http):
    with patch.object(etcd_cluster._OPENER, "open", fake_http.open), patch.dict(etcd_cluster.__utils__, {"halite_http.opener": fake_http.opener}):
        fake_http.route("POST", f"{ETCD}/v3/cluster/member/list", (200, MEMBER_LIST))
        yield fake_http


def test_virtual():
    assert etcd_cluster.__virtual__() is True


def test_members_turns_string_ids_into_hex(etcd):
    found = etcd_cluster.members()
    assert found[0] == {
        "id": "8e9e05c52164694d",
        "name": "db-01",
        "peer_urls": ["https://10.0.0.11:2380"],
        "client_urls": ["https://10.0.0.11:2379"],
        "is_learner": False,
        "started": True,
    }
    assert [m["id"] for m in found] == [HEX_1, HEX_2, HEX_3]
    assert etcd.calls[0]["body"] == {}


def test_members_unstarted_member_has_no_name(etcd):
    data = {"header": HEADER, "members": [member(ID_1, "db-01", "10.0.0.11"), {"ID": ID_2, "peerURLs": ["https://10.0.0.12:2380"]}]}
    etcd.route("POST", f"{ETCD}/v3/cluster/member/list", (200, data))
    found = etcd_cluster.members()
    assert found[1] == {
        "id": HEX_2, "name": "", "peer_urls": ["https://10.0.0.12:2380"], "client_urls": [],
        "is_learner": False, "started": False,
    }


def test_health_healthy(etcd):
    etcd.route("GET", f"{ETCD}/health", (200, {"health": "true", "reason": ""}))
    etcd.route("POST", f"{ETCD}/v3/maintenance/status", (200, status(ID_1, ID_2)))
    seen = etcd_cluster.health()
    assert seen["healthy"] is True
    assert seen["leader"] == "db-02"
    assert seen["leader_id"] == HEX_2
    assert seen["member_id"] == HEX_1
    assert seen["version"] == "3.4.30"
    assert seen["started"] == 3
    assert [m["name"] for m in seen["members"]] == ["db-01", "db-02", "db-03"]
    assert seen["problems"] == []


def test_health_503_is_an_answer_not_an_error(etcd):
    etcd.route("GET", f"{ETCD}/health", (503, {"health": "false", "reason": "RAFT NO LEADER"}))
    etcd.route("POST", f"{ETCD}/v3/maintenance/status", (200, status(ID_1, "0")))
    seen = etcd_cluster.health()
    assert seen["healthy"] is False
    assert seen["leader"] is None
    assert seen["reason"] == "RAFT NO LEADER"
    assert seen["problems"] == [
        f"{ETCD}/health says unhealthy: RAFT NO LEADER",
        "the local member knows no leader",
    ]


def test_health_unreachable_names_the_url(fake_http):
    with patch.object(etcd_cluster._OPENER, "open", fake_http.open), patch.dict(etcd_cluster.__utils__, {"halite_http.opener": fake_http.opener}):
        with pytest.raises(CommandExecutionError) as err:
            etcd_cluster.health()
    assert f"etcd GET {ETCD}/health is unreachable" in str(err.value)
    assert "Connection refused" in str(err.value)


def test_http_error_includes_status_and_body(etcd):
    etcd.route(
        "POST",
        f"{ETCD}/v3/maintenance/alarm",
        (503, {"error": "etcdserver: request timed out", "message": "etcdserver: request timed out", "code": 14}),
    )
    with pytest.raises(CommandExecutionError, match=r"POST https://127.0.0.1:22379/v3/maintenance/alarm answered HTTP 503.*request timed out"):
        etcd_cluster.alarms()


def test_port_from_kwarg(fake_http):
    fake_http.route("POST", "https://127.0.0.1:32379/v3/cluster/member/list", (200, MEMBER_LIST))
    with patch.object(etcd_cluster._OPENER, "open", fake_http.open), patch.dict(etcd_cluster.__utils__, {"halite_http.opener": fake_http.opener}):
        assert len(etcd_cluster.members(port=32379)) == 3


def test_leader_asks_every_endpoint_and_tolerates_one_down(etcd):
    etcd.route("POST", "https://10.0.0.11:2379/v3/maintenance/status", (200, status(ID_1, ID_3)))
    etcd.route("POST", "https://10.0.0.12:2379/v3/maintenance/status", (200, status(ID_2, ID_3)))
    # 10.0.0.13 has no route: connection refused.
    assert etcd_cluster.leader() == "db-03"
    assert len(etcd.requests("POST", "https://10.0.0.13:2379/v3/maintenance/status")) == 1


def test_leader_none_when_nobody_knows(etcd):
    etcd.route("POST", "https://10.0.0.11:2379/v3/maintenance/status", (200, status(ID_1, "0")))
    assert etcd_cluster.leader() is None


def test_status_lists_each_endpoint(etcd):
    etcd.route("POST", "https://10.0.0.11:2379/v3/maintenance/status", (200, status(ID_1, ID_1)))
    etcd.route("POST", "https://10.0.0.12:2379/v3/maintenance/status", (200, status(ID_2, ID_1)))
    found = etcd_cluster.status()
    assert found[0]["name"] == "db-01"
    assert found[0]["is_leader"] is True
    assert found[0]["db_size"] == 24576
    assert found[0]["raft_term"] == 2
    assert found[1]["is_leader"] is False
    assert found[1]["leader"] == HEX_1
    assert found[2]["endpoint"] == "https://10.0.0.13:2379"
    assert "unreachable" in found[2]["error"]


def test_alarms(etcd):
    etcd.route(
        "POST",
        f"{ETCD}/v3/maintenance/alarm",
        (200, {"header": HEADER, "alarms": [{"memberID": ID_2, "alarm": "NOSPACE"}, {"memberID": ID_3, "alarm": 2}]}),
    )
    assert etcd_cluster.alarms() == [
        {"member_id": HEX_2, "member": "db-02", "alarm": "NOSPACE"},
        {"member_id": HEX_3, "member": "db-03", "alarm": "CORRUPT"},
    ]
    assert etcd.requests("POST", f"{ETCD}/v3/maintenance/alarm")[0]["body"] == {"action": "GET"}


def test_no_alarms(etcd):
    etcd.route("POST", f"{ETCD}/v3/maintenance/alarm", (200, {"header": HEADER}))
    assert etcd_cluster.alarms() == []


def test_member_add_returns_initial_cluster(etcd):
    new_id = "5765298245428390391"
    reply = {
        "header": HEADER,
        "member": {"ID": new_id, "peerURLs": ["https://10.0.0.14:2380"]},
        "members": MEMBER_LIST["members"] + [{"ID": new_id, "peerURLs": ["https://10.0.0.14:2380"]}],
    }
    etcd.route("POST", f"{ETCD}/v3/cluster/member/add", (200, reply))
    result = etcd_cluster.member_add("https://10.0.0.14:2380", name="db-04")
    assert result["added"] is True
    assert result["id"] == format(int(new_id), "x")
    assert result["initial_cluster"] == (
        "db-01=https://10.0.0.11:2380,db-02=https://10.0.0.12:2380,"
        "db-03=https://10.0.0.13:2380,db-04=https://10.0.0.14:2380"
    )
    assert result["initial_cluster_state"] == "existing"
    assert result["reply"] == reply
    assert etcd.requests("POST", f"{ETCD}/v3/cluster/member/add")[0]["body"] == {"peerURLs": ["https://10.0.0.14:2380"]}


def test_member_add_existing_peer_url_adds_nothing(etcd):
    result = etcd_cluster.member_add("https://10.0.0.13:2380")
    assert result["added"] is False
    assert result["name"] == "db-03"
    assert result["id"] == HEX_3
    assert result["initial_cluster"].endswith("db-03=https://10.0.0.13:2380")
    assert not etcd.requests("POST", f"{ETCD}/v3/cluster/member/add")


def test_member_add_refused_by_etcd(etcd):
    etcd.route(
        "POST",
        f"{ETCD}/v3/cluster/member/add",
        (400, {"error": "etcdserver: unhealthy cluster", "code": 9}),
    )
    with pytest.raises(CommandExecutionError, match="member/add answered HTTP 400.*unhealthy cluster"):
        etcd_cluster.member_add("https://10.0.0.14:2380", name="db-04")


def test_member_add_checks_the_url(etcd):
    with pytest.raises(SaltInvocationError, match="peer_url"):
        etcd_cluster.member_add("10.0.0.14:2380")


def test_bad_json_is_an_error(etcd):
    etcd.route("GET", f"{ETCD}/health", (200, "404 page not found"))
    with pytest.raises(CommandExecutionError, match="/health returned a body that is not JSON"):
        etcd_cluster.health()


def test_member_remove_by_name_sends_the_decimal_id(etcd):
    left = [m for m in MEMBER_LIST["members"] if m["ID"] != ID_3]
    etcd.route("POST", f"{ETCD}/v3/cluster/member/remove", (200, {"header": HEADER, "members": left}))
    result = etcd_cluster.member_remove("db-03")
    assert result["removed"] is True and result["id"] == HEX_3 and result["name"] == "db-03"
    assert [m["name"] for m in result["members"]] == ["db-01", "db-02"]
    assert etcd.requests("POST", f"{ETCD}/v3/cluster/member/remove")[0]["body"] == {"ID": ID_3}


def test_member_remove_by_hex_id(etcd):
    etcd.route("POST", f"{ETCD}/v3/cluster/member/remove", (200, {"header": HEADER, "members": []}))
    assert etcd_cluster.member_remove(HEX_2)["name"] == "db-02"


def test_member_remove_unknown_name_lists_the_members(etcd):
    with pytest.raises(CommandExecutionError, match="no member named or numbered 'db-09'.*db-01="):
        etcd_cluster.member_remove("db-09")
    assert not etcd.requests("POST", f"{ETCD}/v3/cluster/member/remove")


def leader_is(etcd, leader_id):
    for member_id, address in ((ID_1, "10.0.0.11"), (ID_2, "10.0.0.12"), (ID_3, "10.0.0.13")):
        etcd.route("POST", f"https://{address}:2379/v3/maintenance/status", (200, status(member_id, leader_id)))


def test_move_leader_asks_the_leader_to_hand_over(etcd):
    leader_is(etcd, ID_1)
    etcd.route("POST", "https://10.0.0.11:2379/v3/maintenance/transfer-leadership", (200, {"header": HEADER}))
    assert etcd_cluster.move_leader(target="db-03") == {"moved": True, "from": "db-01", "to": "db-03"}
    sent = etcd.requests("POST", "https://10.0.0.11:2379/v3/maintenance/transfer-leadership")
    assert [c["body"] for c in sent] == [{"targetID": ID_3}]


def test_move_leader_default_target_is_the_first_other_member(etcd):
    leader_is(etcd, ID_1)
    etcd.route("POST", "https://10.0.0.11:2379/v3/maintenance/transfer-leadership", (200, {"header": HEADER}))
    assert etcd_cluster.move_leader()["to"] == "db-02"


def test_move_leader_to_the_leader_changes_nothing(etcd):
    leader_is(etcd, ID_2)
    assert etcd_cluster.move_leader(target="db-02") == {"moved": False, "from": "db-02", "to": "db-02"}
    assert not [c for c in etcd.calls if c["url"].endswith("transfer-leadership")]


def test_move_leader_without_a_leader_is_an_error(etcd):
    leader_is(etcd, "0")
    with pytest.raises(CommandExecutionError, match="no leader to move"):
        etcd_cluster.move_leader()


def test_https_with_halite_ca_and_roots_client_certificate(etcd):
    assert etcd_cluster.members()[0]["name"] == "db-01"
    assert etcd.calls[0]["url"] == f"{ETCD}/v3/cluster/member/list" and ETCD.startswith("https://")
    assert etcd.tls == {"ca_file": "/etc/halite/tls/ca.crt", "cert_file": "/etc/halite/tls/host.crt",
                        "key_file": "/etc/halite/tls/host.key"}


def test_tls_paths_and_the_plaintext_switch_come_from_config(fake_http):
    paths = {"ca": "/x/ca.pem", "cert": "/x/me.pem", "key": "/x/me.key"}
    opts = {"halite": {"etcd": {"client_port": 32379}, "tls_paths": paths}}
    with patch.object(etcd_cluster._OPENER, "open", fake_http.open), \
            patch.dict(etcd_cluster.__utils__, {"halite_http.opener": fake_http.opener}), \
            patch.dict(salt.modules.config.__pillar__, {}, clear=True), patch.dict(salt.modules.config.__opts__, opts):
        fake_http.route("POST", "https://127.0.0.1:32379/v3/cluster/member/list", (200, MEMBER_LIST))
        etcd_cluster.members()
        assert fake_http.tls == {"ca_file": "/x/ca.pem", "cert_file": "/x/me.pem", "key_file": "/x/me.key"}
        # etcd in clear text (tls.unsafe_plaintext: [etcd]): plain http, no TLS opener at all
        fake_http.tls = None
        opts["halite"]["tls_on"] = {"etcd": False}
        fake_http.route("POST", "http://127.0.0.1:32379/v3/cluster/member/list", (200, MEMBER_LIST))
        etcd_cluster.members()
        assert fake_http.calls[-1]["url"] == "http://127.0.0.1:32379/v3/cluster/member/list"
        assert fake_http.tls is None
