"""The host-side script that hands etcd's leadership away from the primary's
host (salt/patroni/files/halite-etcd-leader-away.py), HTTP mocked at the boundary."""
import importlib.util
import json
import urllib.error

import pytest

from conftest import REPO

SCRIPT = REPO / "salt/patroni/files/halite-etcd-leader-away.py"
ETCD = "https://127.0.0.1:2379"
PATRONI = "https://127.0.0.1:8008"
TLS = {"ca": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt", "key": "/etc/halite/tls/postgres.key"}


def load(tmp_path, etcd_url, patroni_url, etcd_tls, patroni_tls, name="leader_away"):
    """The script as etcd_leader.sls renders it (its context filled in), imported."""
    text = (SCRIPT.read_text().replace("{{ etcd_url }}", etcd_url).replace("{{ patroni_url }}", patroni_url)
            .replace("{{ etcd_tls|json }}", json.dumps(etcd_tls)).replace("{{ patroni_tls|json }}", json.dumps(patroni_tls)))
    assert "{{" not in text, "a template placeholder the test does not fill"
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
ME, OTHER_A, OTHER_B, LEARNER = "11", "22", "33", "44"


@pytest.fixture
def script(tmp_path, fake_http, monkeypatch):
    built = []
    # the openers are built at import: record what they were asked for, answer with the fake
    monkeypatch.setattr("ssl.create_default_context", lambda cafile=None: built.append(cafile) or _Context(built))
    mod = load(tmp_path, ETCD, PATRONI, TLS, TLS)
    assert built == [TLS["ca"], ("chain", TLS["cert"], TLS["key"]), TLS["ca"], ("chain", TLS["cert"], TLS["key"])]
    mod._ETCD_OPENER = mod._PATRONI_OPENER = fake_http
    return mod


class _Context:
    """A stand-in SSL context: records the client certificate it is given."""

    def __init__(self, built):
        self.built = built

    def load_cert_chain(self, cert, key):
        self.built.append(("chain", cert, key))


def test_clear_text_builds_no_tls_context(tmp_path, fake_http, monkeypatch):
    monkeypatch.setattr("ssl.create_default_context", lambda **kw: pytest.fail("no TLS in clear text"))
    mod = load(tmp_path, "http://127.0.0.1:2379", "http://127.0.0.1:8008", {}, {}, name="plain")
    mod._ETCD_OPENER = mod._PATRONI_OPENER = fake_http
    fake_http.route("GET", "http://127.0.0.1:8008/primary", (503, {"role": "replica"}))
    assert mod.run(["x"]) == 0
    assert [c["url"] for c in fake_http.calls] == ["http://127.0.0.1:8008/primary"]


def etcd_routes(http, leader: str):
    http.route("POST", ETCD + "/v3/maintenance/status",
               (200, {"header": {"member_id": ME}, "leader": leader}))
    http.route("POST", ETCD + "/v3/cluster/member/list", (200, {"members": [
        {"ID": ME, "name": "db-01"},
        {"ID": OTHER_B, "name": "db-03"},
        {"ID": LEARNER, "name": "db-00", "isLearner": True},
        {"ID": "55", "name": ""},  # added, never started
        {"ID": OTHER_A, "name": "db-02"},
    ]}))
    http.route("POST", ETCD + "/v3/maintenance/transfer-leadership", (200, {}))


def transfers(http):
    return [c["body"] for c in http.requests("POST", ETCD + "/v3/maintenance/transfer-leadership")]


def test_primary_holding_the_etcd_leadership_hands_it_to_a_started_voter(script, fake_http, capsys):
    fake_http.route("GET", PATRONI + "/primary", (200, {"role": "primary"}))
    etcd_routes(fake_http, leader=ME)
    assert script.run(["x", "on_role_change", "primary", "halite"]) == 0
    assert transfers(fake_http) == [{"targetID": OTHER_A}]  # db-02: first started voter by name
    assert "handed from this host" in capsys.readouterr().out


def test_timer_run_without_arguments_also_acts(script, fake_http):
    fake_http.route("GET", PATRONI + "/primary", (200, {}))
    etcd_routes(fake_http, leader=ME)
    assert script.run(["x"]) == 0
    assert transfers(fake_http) == [{"targetID": OTHER_A}]


def test_primary_without_the_etcd_leadership_changes_nothing(script, fake_http):
    fake_http.route("GET", PATRONI + "/primary", (200, {}))
    etcd_routes(fake_http, leader=OTHER_B)
    assert script.run(["x"]) == 0
    assert transfers(fake_http) == []


def test_replica_changes_nothing(script, fake_http):
    fake_http.route("GET", PATRONI + "/primary", (503, {"role": "replica"}))
    etcd_routes(fake_http, leader=ME)
    assert script.run(["x"]) == 0
    assert transfers(fake_http) == []
    assert not fake_http.requests("POST", ETCD + "/v3/maintenance/status")


def test_callback_for_a_replica_role_asks_nobody(script, fake_http):
    assert script.run(["x", "on_role_change", "replica", "halite"]) == 0
    assert fake_http.calls == []


def test_no_other_started_member_is_said_not_forced(script, fake_http, capsys):
    fake_http.route("GET", PATRONI + "/primary", (200, {}))
    fake_http.route("POST", ETCD + "/v3/maintenance/status", (200, {"header": {"member_id": ME}, "leader": ME}))
    fake_http.route("POST", ETCD + "/v3/cluster/member/list", (200, {"members": [{"ID": ME, "name": "db-01"}]}))
    assert script.run(["x"]) == 0
    assert transfers(fake_http) == []
    assert "no other started member" in capsys.readouterr().out


def test_unreachable_etcd_is_reported_and_never_fails_the_callback(script, fake_http, capsys):
    fake_http.route("GET", PATRONI + "/primary", (200, {}))
    fake_http.route("POST", ETCD + "/v3/maintenance/status",
                    urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert script.run(["x", "on_role_change", "primary", "halite"]) == 0
    assert "Connection refused" in capsys.readouterr().err


def test_missing_tls_files_end_the_run_quietly(tmp_path, capsys):
    # Patroni's callback must not fail: a key not laid down yet is reported, exit 0
    missing = {"ca": str(tmp_path / "ca.crt"), "cert": str(tmp_path / "h.crt"), "key": str(tmp_path / "h.key")}
    with pytest.raises(SystemExit) as info:
        load(tmp_path, ETCD, PATRONI, missing, missing, name="missing")
    assert info.value.code == 0 and "TLS files cannot be used" in capsys.readouterr().err
