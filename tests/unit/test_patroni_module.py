"""Unit tests for _modules/patroni.py: a fake Patroni REST API behind the opener."""
import base64
import copy
import urllib.error
from unittest.mock import patch

import patroni
import pytest
import yaml
import salt.modules.config
from salt.exceptions import CommandExecutionError, SaltInvocationError
from conftest import salt_utils

PILLAR = {
    "halite": {
        "patroni": {"restapi": {"port": 8018, "username": "patroni", "password": "s3cret"}},
    }
}
API = "https://127.0.0.1:8018"  # port from PILLAR

# GET /cluster as Patroni 4.1 answers it in synchronous mode.
CLUSTER = {
    "members": [
        {
            "name": "db-01",
            "role": "leader",
            "state": "running",
            "api_url": "https://10.0.0.11:8008/patroni",
            "host": "10.0.0.11",
            "port": 5432,
            "timeline": 3,
        },
        {
            "name": "db-02",
            "role": "sync_standby",
            "state": "streaming",
            "api_url": "https://10.0.0.12:8008/patroni",
            "host": "10.0.0.12",
            "port": 5432,
            "timeline": 3,
            "receive_lag": 0,
            "receive_lsn": "0/5000148",
            "replay_lag": 0,
            "replay_lsn": "0/5000148",
            "lag": 0,
            "lsn": "0/5000148",
        },
        {
            "name": "db-03",
            "role": "replica",
            "state": "streaming",
            "api_url": "https://10.0.0.13:8008/patroni",
            "host": "10.0.0.13",
            "port": 5432,
            "timeline": 3,
            "pending_restart": True,
            "pending_restart_reason": {"max_connections": {"old_value": "100", "new_value": "200"}},
            "receive_lag": 4096,
            "receive_lsn": "0/4FFF148",
            "replay_lag": 8192,
            "replay_lsn": "0/4FFE148",
            "lag": 8192,
            "lsn": "0/4FFE148",
        },
    ],
    "scope": "halite",
}


def cluster_with(**changes):
    """CLUSTER with some members' fields replaced: cluster_with(db_03={"lag": "unknown"})."""
    data = copy.deepcopy(CLUSTER)
    for member in data["members"]:
        member.update(changes.get(member["name"].replace("-", "_"), {}))
    return data


def led_by(name):
    """CLUSTER after a switchover to ``name`` (db-01 becomes a streaming replica)."""
    data = copy.deepcopy(CLUSTER)
    for member in data["members"]:
        if member["name"] == name:
            member.update(role="leader", state="running")
            for key in ("lag", "receive_lag", "replay_lag"):
                member.pop(key, None)
        else:
            member.update(role="replica", state="streaming", lag=0)
    return data


@pytest.fixture
def configure_loader_modules():
    # Salt's own config.get: minion options, grains, then pillar.
    return {
        patroni: {"__salt__": {"config.get": salt.modules.config.get}, "__opts__": {}, "__utils__": salt_utils()},
        salt.modules.config: {"__pillar__": PILLAR, "__opts__": {}, "__grains__": {}},
    }


@pytest.fixture
def api(fake_http, clock):
    """The fake Patroni; time inside the module is the fake clock."""
    with patch.object(patroni._OPENER, "open", fake_http.open), patch.dict(patroni.__utils__, {"halite_http.opener": fake_http.opener}), patch.object(patroni, "time", clock):
        yield fake_http


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_virtual():
    assert patroni.__virtual__() is True


def test_members_normalises_patroni_4_cluster(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    found = patroni.members()
    assert [(m["name"], m["role"], m["state"], m["timeline"], m["lag"]) for m in found] == [
        ("db-01", "leader", "running", 3, None),
        ("db-02", "sync_standby", "streaming", 3, 0),
        ("db-03", "replica", "streaming", 3, 8192),
    ]
    assert found[0]["host"] == "10.0.0.11"
    assert [m["pending_restart"] for m in found] == [False, False, True]
    # Reading needs no credentials.
    assert "Authorization" not in api.calls[0]["headers"]


def test_members_unknown_lag_is_none_and_falls_back_to_replay_lag(api):
    data = cluster_with(
        db_02={"lag": "unknown", "receive_lag": "unknown", "replay_lag": "unknown"},
        db_03={"lag": None, "replay_lag": 512},
    )
    del data["members"][2]["lag"]
    api.route("GET", f"{API}/cluster", (200, data))
    lags = {m["name"]: m["lag"] for m in patroni.members()}
    assert lags == {"db-01": None, "db-02": None, "db-03": 512}


def test_leader(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    assert patroni.leader() == "db-01"


def test_leader_none_without_leader(api):
    api.route("GET", f"{API}/cluster", (200, cluster_with(db_01={"role": "replica", "state": "stopped"})))
    assert patroni.leader() is None


def test_kwargs_override_pillar(api):
    api.route("GET", "https://10.0.0.12:9008/cluster", (200, CLUSTER))
    assert patroni.leader(host="10.0.0.12", port=9008) == "db-01"


def test_settings_come_from_pillar():
    conn = patroni._connection({})
    assert (conn["port"], conn["username"], conn["password"]) == (8018, "patroni", "s3cret")


def test_minion_options_serve_direct_salt_ssh_calls():
    # salt-ssh gives a directly called function no pillar; the roster passes minion_opts.
    opts = {"halite": {"patroni": {"restapi": {"port": 8028, "username": "u", "password": "p"}}}}
    with patch.dict(salt.modules.config.__pillar__, {}, clear=True), patch.dict(salt.modules.config.__opts__, opts):
        conn = patroni._connection({})
    assert (conn["host"], conn["port"], conn["username"], conn["password"]) == ("127.0.0.1", 8028, "u", "p")


def test_direct_salt_ssh_calls_take_the_password_from_patroni_yml(tmp_path):
    # the roster hands no secret (salt-ssh would leave it in its thin directory): patroni.yml has it
    password = "lab api's \"rest\" $USER:7 \\x #7 {{ pillar }}"
    conf = tmp_path / "patroni.yml"
    conf.write_text(yaml.safe_dump({"restapi": {"authentication": {"username": "u", "password": password}}}))
    opts = {"halite": {"paths": {"patroni_conf": str(conf)}}}
    with patch.dict(salt.modules.config.__pillar__, {}, clear=True), patch.dict(salt.modules.config.__opts__, opts):
        conn = patroni._connection({})
        assert (conn["username"], conn["password"]) == ("u", password)
        conf.write_text("restapi: [unclosed\n")
        with pytest.raises(CommandExecutionError, match="cannot read Patroni's credentials"):
            patroni._connection({})
        conf.unlink()
        assert patroni._connection({})["password"] is None  # no file: no credentials, safe calls only


def test_unknown_keyword_is_refused(api):
    with pytest.raises(SaltInvocationError, match="unknown keyword argument.*hots"):
        patroni.members(hots="10.0.0.1")


def test_salt_internal_keywords_are_ignored(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    assert patroni.leader(__pub_fun="patroni.leader") == "db-01"


def test_health_healthy(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    seen = patroni.health(members=3)
    assert seen["healthy"] is True
    assert seen["problems"] == []
    assert seen["leader"] == "db-01"
    assert seen["members"] == 3
    assert seen["replicas_streaming"] == 2
    assert seen["max_lag"] == 8192
    assert seen["pending_restart"] == ["db-03"]
    assert seen["paused"] is False


def test_health_reports_each_problem(api):
    api.route(
        "GET",
        f"{API}/cluster",
        (200, cluster_with(db_02={"lag": "unknown", "receive_lag": "unknown", "replay_lag": "unknown"}, db_03={"lag": 2_000_000})),
    )
    seen = patroni.health(members=4, max_lag=1048576)
    assert seen["healthy"] is False
    assert seen["unknown_lag"] == ["db-02"]
    assert seen["max_lag"] == 2_000_000
    assert seen["problems"] == [
        "3 members, expected 4",
        "db-02 has unknown lag",
        "db-03 lags 2000000 bytes, more than 1048576",
    ]


def test_health_replica_not_streaming(api):
    api.route("GET", f"{API}/cluster", (200, cluster_with(db_03={"state": "starting"})))
    seen = patroni.health()
    assert seen["healthy"] is False
    assert seen["replicas_streaming"] == 1
    assert seen["problems"] == ["db-03 is starting, not streaming"]


def test_table(api):
    api.route("GET", f"{API}/cluster", (200, cluster_with(db_02={"lag": "unknown", "replay_lag": "unknown", "receive_lag": "unknown"})))
    lines = patroni.table().splitlines()
    assert lines[0].split() == ["Member", "Host", "Role", "State", "TL", "Lag"]
    assert lines[1].split() == ["db-01", "10.0.0.11:5432", "leader", "running", "3"]
    assert lines[2].split() == ["db-02", "10.0.0.12:5432", "sync_standby", "streaming", "3", "unknown"]
    assert lines[3].split() == ["db-03", "10.0.0.13:5432", "replica", "streaming", "*", "3", "8192"]
    assert lines[4] == "* pending restart"


def test_pending_restart(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    assert patroni.pending_restart() == ["db-03"]


def test_history(api):
    api.route(
        "GET",
        f"{API}/history",
        (200, [[1, 25623960, "no recovery target specified", "2025-11-20T10:00:00+00:00"],
               [2, 50331856, "no recovery target specified", "2025-11-21T09:35:52+00:00", "db-02"]]),
    )
    assert patroni.history() == [
        {"timeline": 1, "lsn": 25623960, "reason": "no recovery target specified",
         "timestamp": "2025-11-20T10:00:00+00:00", "new_leader": None},
        {"timeline": 2, "lsn": 50331856, "reason": "no recovery target specified",
         "timestamp": "2025-11-21T09:35:52+00:00", "new_leader": "db-02"},
    ]


def test_config_and_patch_config_sends_auth(api):
    api.route("GET", f"{API}/config", (200, {"ttl": 30, "loop_wait": 10}))
    api.route("PATCH", f"{API}/config", (200, {"ttl": 20, "loop_wait": 10}))
    assert patroni.config() == {"ttl": 30, "loop_wait": 10}
    assert patroni.patch_config({"ttl": 20}) == {"ttl": 20, "loop_wait": 10}
    sent = api.requests("PATCH", f"{API}/config")[0]
    assert sent["body"] == {"ttl": 20}
    assert sent["headers"]["Authorization"] == basic("patroni", "s3cret")
    assert sent["headers"]["Content-type"] == "application/json"


def test_patch_config_accepts_json_string_and_refuses_empty(api):
    api.route("PATCH", f"{API}/config", (200, {"ttl": 20}))
    assert patroni.patch_config('{"ttl": 20}') == {"ttl": 20}
    with pytest.raises(SaltInvocationError):
        patroni.patch_config({})


def test_pause_and_resume(api):
    api.route("PATCH", f"{API}/config", (200, {"ttl": 20, "pause": True}), (200, {"ttl": 20, "pause": False}))
    assert patroni.pause() == {"paused": True}
    assert patroni.resume() == {"paused": False}
    assert [c["body"] for c in api.requests("PATCH", f"{API}/config")] == [{"pause": True}, {"pause": False}]


def test_connection_refused_names_the_url(api):
    with pytest.raises(CommandExecutionError) as err:
        patroni.members()
    message = str(err.value)
    assert f"GET {API}/cluster" in message
    assert "unreachable" in message
    assert "Connection refused" in message


def test_http_503_includes_status_and_body(api):
    api.route("POST", f"{API}/restart", (503, "restart failed"))
    with pytest.raises(CommandExecutionError) as err:
        patroni.restart()
    message = str(err.value)
    assert f"POST {API}/restart" in message
    assert "HTTP 503" in message
    assert "restart failed" in message


def test_http_401_hints_at_credentials(api):
    api.route("PATCH", f"{API}/config", (401, "no auth header received"))
    with pytest.raises(CommandExecutionError, match="HTTP 401.*no auth header received.*restapi:username"):
        patroni.pause()


def test_bad_json_is_an_error(api):
    api.route("GET", f"{API}/config", (200, "<html>not json</html>"))
    with pytest.raises(CommandExecutionError, match=r"GET https://127.0.0.1:8018/config returned a body that is not JSON"):
        patroni.config()


def test_timeout_is_an_error(api):
    api.route("GET", f"{API}/cluster", TimeoutError("timed out"))
    with pytest.raises(CommandExecutionError, match=r"GET https://127.0.0.1:8018/cluster did not answer within 3 seconds"):
        patroni.members(http_timeout=3)


def test_cluster_without_members_is_an_error(api):
    api.route("GET", f"{API}/cluster", (200, {"error": "nope"}))
    with pytest.raises(CommandExecutionError, match="no member list"):
        patroni.members()


def test_switchover_to_candidate_waits_for_new_leader(api, clock):
    api.route("GET", f"{API}/cluster", (200, CLUSTER), (200, CLUSTER), (200, led_by("db-02")))
    api.route("POST", f"{API}/switchover", (200, 'Successfully switched over to "db-02"'))
    result = patroni.switchover(candidate="db-02", timeout=30)
    assert result == {
        "old_leader": "db-01",
        "new_leader": "db-02",
        "message": 'Successfully switched over to "db-02"',
    }
    post = api.requests("POST", f"{API}/switchover")[0]
    assert post["body"] == {"leader": "db-01", "candidate": "db-02"}
    assert post["headers"]["Authorization"] == basic("patroni", "s3cret")
    assert post["timeout"] == 30
    # One look before the POST, then one poll still showing db-01, then db-02.
    assert clock.sleeps == [1]


def test_switchover_without_candidate_accepts_any_new_leader(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER), (200, led_by("db-03")))
    api.route("POST", f"{API}/switchover", (200, 'Successfully switched over to "db-03"'))
    result = patroni.switchover()
    assert result["new_leader"] == "db-03"
    assert api.requests("POST", f"{API}/switchover")[0]["body"] == {"leader": "db-01"}


def test_switchover_times_out_with_what_it_saw(api, clock):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    api.route("POST", f"{API}/switchover", (200, 'Successfully switched over to "db-02"'))
    with pytest.raises(CommandExecutionError) as err:
        patroni.switchover(candidate="db-02", timeout=5)
    message = str(err.value)
    assert "waited 5 seconds for db-02 to lead" in message
    assert "leader db-01 (running)" in message
    assert sum(clock.sleeps) == 5


def test_switchover_refused_by_patroni(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    api.route("POST", f"{API}/switchover", (412, "candidate name does not match with sync_standby"))
    with pytest.raises(CommandExecutionError, match="HTTP 412.*candidate name does not match"):
        patroni.switchover(candidate="db-03")


def test_switchover_without_leader(api):
    api.route("GET", f"{API}/cluster", (200, cluster_with(db_01={"role": "replica", "state": "stopped"})))
    with pytest.raises(CommandExecutionError, match="use patroni.failover"):
        patroni.switchover()
    assert not api.requests("POST", f"{API}/switchover")


def test_failover(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER), (200, led_by("db-03")))
    api.route("POST", f"{API}/failover", (200, 'Successfully failed over to "db-03"'))
    result = patroni.failover("db-03")
    assert result == {"old_leader": "db-01", "new_leader": "db-03", "message": 'Successfully failed over to "db-03"'}
    assert api.requests("POST", f"{API}/failover")[0]["body"] == {"candidate": "db-03"}


def test_restart_remote_member_uses_its_api_url(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    api.route("POST", "https://10.0.0.13:8008/restart", (200, "restarted successfully"))
    result = patroni.restart("db-03", restart_pending=True, timeout=60)
    assert result == {"member": "db-03", "message": "restarted successfully"}
    post = api.requests("POST", "https://10.0.0.13:8008/restart")[0]
    assert post["body"] == {"restart_pending": True, "timeout": 60}
    assert post["headers"]["Authorization"] == basic("patroni", "s3cret")


def test_restart_local_member(api):
    api.route("POST", f"{API}/restart", (200, "restarted successfully"))
    assert patroni.restart() == {"member": "local", "message": "restarted successfully"}
    assert api.requests("POST", f"{API}/restart")[0]["body"] == {}


def test_restart_unknown_member(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    with pytest.raises(CommandExecutionError, match="db-09 is not a member.*db-01, db-02, db-03"):
        patroni.restart("db-09")


def test_reload_and_reinit(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    api.route("POST", f"{API}/reload", (202, "reload scheduled"))
    api.route("POST", "https://10.0.0.13:8008/reinitialize", (200, "reinitialize started"))
    assert patroni.reload() == {"member": "local", "message": "reload scheduled"}
    assert patroni.reinit("db-03", force=True) == {"member": "db-03", "message": "reinitialize started"}
    assert api.requests("POST", "https://10.0.0.13:8008/reinitialize")[0]["body"] == {"force": True}


def test_url_error_reason_from_real_exception(api):
    api.route("GET", f"{API}/config", urllib.error.URLError("timed out"))
    with pytest.raises(CommandExecutionError, match="unreachable: timed out"):
        patroni.config()


def test_is_leader_reads_the_local_role():
    with patch.object(patroni, "_get", return_value={"role": "primary", "state": "running"}) as get:
        assert patroni.is_leader() is True
    assert get.call_args[0][1] == "/patroni"
    with patch.object(patroni, "_get", return_value={"role": "replica", "state": "streaming"}):
        assert patroni.is_leader() is False


def _m(name, role, state="streaming", pending=False):
    return {"name": name, "role": role, "state": state, "pending_restart": pending, "api_url": None, "lag": 0}


def test_rolling_restart_restarts_replicas_first_and_the_leader_after_a_switchover():
    before = [_m("db-01", "leader", "running", True), _m("db-02", "sync_standby", pending=True), _m("db-03", "replica", pending=True)]
    after_replicas = [_m("db-01", "leader", "running", True), _m("db-02", "sync_standby"), _m("db-03", "replica")]
    after_switch = [_m("db-01", "replica", pending=True), _m("db-02", "leader", "running"), _m("db-03", "sync_standby")]
    done = [_m("db-01", "replica"), _m("db-02", "leader", "running"), _m("db-03", "sync_standby")]
    calls = []
    states = iter([before, after_replicas, after_replicas, after_replicas, after_switch, after_switch, done, done])
    with patch.object(patroni, "_members", side_effect=lambda conn: next(states)), \
            patch.object(patroni, "restart", side_effect=lambda member, **kw: calls.append(("restart", member))), \
            patch.object(patroni, "switchover", side_effect=lambda candidate, leader, **kw: calls.append(("switchover", leader, candidate)) or {"new_leader": candidate}), \
            patch.object(patroni.time, "sleep"):
        out = patroni.rolling_restart(timeout=5)
    assert calls == [("restart", "db-02"), ("restart", "db-03"), ("switchover", "db-01", "db-02"), ("restart", "db-01")]
    assert out["restarted"] == ["db-02", "db-03", "db-01"] and out["leader"] == "db-02"


def test_rolling_restart_names_the_member_that_does_not_come_back():
    stuck = [_m("db-01", "leader", "running"), _m("db-02", "replica", "starting", True)]
    with patch.object(patroni, "_members", return_value=stuck), patch.object(patroni, "restart"), \
            patch.object(patroni.time, "sleep"), patch.object(patroni.time, "monotonic", side_effect=[0, 0, 10, 10, 20]):
        with pytest.raises(CommandExecutionError, match="db-02 did not become a streaming replica"):
            patroni.rolling_restart(timeout=5)


def test_https_verified_against_halite_ca(api):
    api.route("GET", f"{API}/cluster", (200, CLUSTER))
    assert patroni.leader() == "db-01"
    # the host's certificate too: Patroni (verify_client: optional) asks unsafe calls for one
    assert API.startswith("https://") and api.tls == {"ca_file": "/etc/halite/tls/ca.crt",
                                                      "cert_file": "/etc/halite/tls/host.crt",
                                                      "key_file": "/etc/halite/tls/host.key"}


def test_patroni_api_in_clear_text_when_the_pillar_says_so(api):
    opts = {"halite": {"tls_on": {"patroni_api": False}, "patroni": {"restapi": {"port": 8018}}}}
    with patch.dict(salt.modules.config.__pillar__, {}, clear=True), patch.dict(salt.modules.config.__opts__, opts):
        api.route("GET", "http://127.0.0.1:8018/cluster", (200, CLUSTER))
        assert patroni.leader() == "db-01"
    assert api.tls is None
