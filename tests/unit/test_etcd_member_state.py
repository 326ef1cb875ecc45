"""Unit tests for _states/etcd_member.py over the real etcd_cluster module,
with etcd's gateway faked at the HTTP boundary."""
from unittest.mock import patch

import etcd_cluster
import etcd_member
import pytest
import salt.modules.config
from conftest import salt_utils

ID_1, ID_2, ID_3, NEW = "10276657743932975437", "10501334649042878790", "18249187646912138824", "5765298245428390391"
P1, P2 = "https://10.0.0.11:2379", "https://10.0.0.12:2379"
NEW_PEER = "https://10.0.0.13:2380"


def member(member_id, name, address):
    return {"ID": member_id, "name": name, "peerURLs": [f"https://{address}:2380"],
            "clientURLs": [f"https://{address}:2379"] if name else []}


TWO = [member(ID_1, "db-01", "10.0.0.11"), member(ID_2, "db-02", "10.0.0.12")]
THREE = TWO + [member(ID_3, "db-03", "10.0.0.13")]


@pytest.fixture
def configure_loader_modules():
    salt_funcs = {name: getattr(etcd_cluster, name) for name in ("members", "member_add", "member_remove")}
    return {
        etcd_cluster: {"__salt__": {"config.get": salt.modules.config.get}, "__opts__": {}, "__utils__": salt_utils()},
        salt.modules.config: {"__pillar__": {}, "__opts__": {}, "__grains__": {}},
        etcd_member: {"__salt__": {f"etcd_cluster.{k}": v for k, v in salt_funcs.items()}, "__opts__": {"test": False}},
    }


@pytest.fixture
def etcd(fake_http):
    with patch.object(etcd_cluster._OPENER, "open", fake_http.open), patch.dict(etcd_cluster.__utils__, {"halite_http.opener": fake_http.opener}):
        yield fake_http


def present(**kw):
    args = {"name": "db-03", "peer_url": NEW_PEER, "peers": ["10.0.0.11", "10.0.0.12"]}
    args.update(kw)
    return etcd_member.present(**args)


def test_present_adds_through_the_first_peer_that_answers(etcd):
    # 10.0.0.11 refuses (no route); 10.0.0.12 answers
    etcd.route("POST", f"{P2}/v3/cluster/member/list", (200, {"members": TWO}))
    etcd.route("POST", f"{P2}/v3/cluster/member/add", (200, {
        "member": {"ID": NEW, "peerURLs": [NEW_PEER]},
        "members": TWO + [{"ID": NEW, "peerURLs": [NEW_PEER]}]}))
    ret = present()
    assert ret["result"] is True, ret
    assert ret["changes"] == {"member": {"old": None, "new": {
        "name": "db-03", "peer_url": NEW_PEER, "id": format(int(NEW), "x")}}}
    assert "through 10.0.0.12" in ret["comment"] and "db-03=https://10.0.0.13:2380" in ret["comment"]
    assert [c["body"] for c in etcd.requests("POST", f"{P2}/v3/cluster/member/add")] == [{"peerURLs": [NEW_PEER]}]


def test_present_member_already_listed_changes_nothing(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": THREE}))
    ret = present()
    assert ret["result"] is True and ret["changes"] == {}
    assert "already" in ret["comment"] and "started" in ret["comment"]
    assert not [c for c in etcd.calls if c["url"].endswith("/member/add")]


def test_present_dry_run_says_what_it_would_add(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": TWO}))
    with patch.dict(etcd_member.__opts__, {"test": True}):
        ret = present()
    assert ret["result"] is None
    assert ret["changes"]["member"]["new"] == {"name": "db-03", "peer_url": NEW_PEER}
    assert "Would add db-03" in ret["comment"]
    assert not [c for c in etcd.calls if c["url"].endswith("/member/add")]


def test_present_refuses_a_removed_members_leftover_data(etcd, tmp_path):
    (tmp_path / "member").mkdir()
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": TWO}))
    ret = present(data_dir=str(tmp_path))
    assert ret["result"] is False and ret["changes"] == {}
    assert "holds the data of an etcd member that the cluster no longer lists" in ret["comment"]
    assert not [c for c in etcd.calls if c["url"].endswith("/member/add")]


def test_present_no_peer_answers(etcd):
    ret = present()
    assert ret["result"] is False
    assert "no running etcd member answered" in ret["comment"]
    assert "10.0.0.11:2379" in ret["comment"] and "10.0.0.12:2379" in ret["comment"]


def test_present_add_refused_by_etcd(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": TWO}))
    etcd.route("POST", f"{P1}/v3/cluster/member/add", (400, {"error": "etcdserver: unhealthy cluster"}))
    ret = present()
    assert ret["result"] is False and ret["changes"] == {}
    assert "unhealthy cluster" in ret["comment"]


def test_absent_removes_a_listed_member(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": THREE}))
    etcd.route("POST", f"{P1}/v3/cluster/member/remove", (200, {"members": TWO}))
    ret = etcd_member.absent("db-03", peers="10.0.0.11,10.0.0.12")
    assert ret["result"] is True
    assert ret["changes"] == {"member": {"old": {"name": "db-03", "id": format(int(ID_3), "x")}, "new": None}}
    assert [c["body"] for c in etcd.requests("POST", f"{P1}/v3/cluster/member/remove")] == [{"ID": ID_3}]


def test_absent_member_not_listed_changes_nothing(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": TWO}))
    ret = etcd_member.absent("db-03", peers=["10.0.0.11"])
    assert ret["result"] is True and ret["changes"] == {}
    assert not [c for c in etcd.calls if c["url"].endswith("/member/remove")]


def test_absent_dry_run(etcd):
    etcd.route("POST", f"{P1}/v3/cluster/member/list", (200, {"members": THREE}))
    with patch.dict(etcd_member.__opts__, {"test": True}):
        ret = etcd_member.absent("db-03", peers=["10.0.0.11"])
    assert ret["result"] is None and "Would remove db-03" in ret["comment"]
    assert not [c for c in etcd.calls if c["url"].endswith("/member/remove")]


def test_no_peers_is_an_error():
    ret = etcd_member.absent("db-03", peers=[])
    assert ret["result"] is False and "no peers given" in ret["comment"]
