"""Render every SLS for every host, for the Debian and RedHat families,
without touching a host (salt-call --local with the grains set in config)."""
import json

import pytest

from halite import config

from rendering import REPO, salt_call

HOSTS = list(config.load()["topology"]["hosts"])


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render")


@pytest.mark.parametrize("family", ["Debian", "RedHat"])
@pytest.mark.parametrize("host", HOSTS)
def test_highstate_renders(tmp, host, family):
    res = salt_call(tmp, host, family, "state.show_highstate")
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    assert isinstance(states, dict), states
    ids = set(states)
    assert {"base-nftables-config", "base-sshd-config", "base-chrony-config"} <= ids
    if host.startswith("db-"):
        assert {"etcd-config-file", "patroni-config-file", "patroni-service-running", "pgbouncer-config-file",
                "postgresql-distro-service-disabled", "patroni-dynamic-config"} <= ids
    if host == "app-01":
        assert "haproxy-config-file" in ids
    if family == "RedHat":
        assert "base-selinux-enforcing" in ids and "base-selinux-haproxy-connect-any" in ids
        assert states["base-chrony-running"]["service"][0] == {"name": "chronyd"} or \
            {"name": "chronyd"} in states["base-chrony-running"]["service"]
    else:
        assert not any(i.startswith("base-selinux") for i in ids)


def test_container_hosts_leave_chrony_to_the_host_clock(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "base.chrony", virtual="systemd-nspawn")
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    assert "base-chrony-running" not in states
    note = states["base-chrony-container-note"]["test"]
    assert any("without CAP_SYS_TIME" in str(x) for x in note)


def test_unknown_os_family_stops_rendering(tmp):
    res = salt_call(tmp, "db-01", "Solaris", "state.show_sls", "base")
    assert res.returncode != 0
    assert "unknown OS family Solaris" in res.stdout + res.stderr


def test_redhat_paths_for_postgresql_16(tmp, monkeypatch):
    local = REPO / "pillar" / "local.yaml"
    assert not local.exists(), "pillar/local.yaml would be overwritten"
    cfg = tmp / "pg16.yaml"
    cfg.write_text("postgresql: {version: 16}\n")
    monkeypatch.setenv("HALITE_SETTINGS", str(cfg))
    res = salt_call(tmp, "db-01", "RedHat", "state.show_sls", "postgresql,patroni.config")
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    pkgs = [x for x in states["postgresql-packages"]["pkg"] if isinstance(x, dict) and "pkgs" in x][0]["pkgs"]
    assert pkgs == ["postgresql16-server", "postgresql16"]
    datadir = [x for x in states["patroni-data-dir"]["file"] if isinstance(x, dict) and "name" in x][0]["name"]
    assert datadir == "/var/lib/pgsql/16/halite"


@pytest.mark.parametrize("sls", sorted(p.stem for p in (REPO / "salt/orch").glob("*.sls")))
def test_orchestrations_render(tmp, sls):
    res = salt_call(tmp, "control", "Debian", "state.show_sls", f"orch.{sls}")
    assert res.returncode == 0, res.stdout + res.stderr
    steps = json.loads(res.stdout)["local"]
    assert steps and all("salt" in step for step in steps.values()), steps


@pytest.mark.parametrize("enabled", [True, False])
def test_etcd_leader_away_follows_the_pillar_switch(tmp, enabled):
    cfg = tmp / f"leader-away-{enabled}.yaml"
    cfg.write_text(f"etcd: {{keep_leader_off_primary: {str(enabled).lower()}}}\n")
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "patroni.etcd_leader", settings=cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    timer = states["etcd-leader-away-timer"]["service"]
    if enabled:
        assert "running" in timer and "etcd-leader-away-script" in states
    else:
        assert "dead" in timer and "etcd-leader-away-files" in states and "etcd-leader-away-script" not in states
