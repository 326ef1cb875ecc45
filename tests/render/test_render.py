"""Render every SLS for every host, for the Debian and RedHat families,
without touching a host (salt-call --local with the grains set in config)."""
import json

import pytest
import yaml

from halite import config

from rendering import REPO, arg, haproxy_check, render_template, salt_call

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
    upgrades = {"Debian": {"base-unattended-upgrades-off", "base-needrestart-list-only"},
                "RedHat": {"base-dnf-automatic-off"}}[family]
    assert (upgrades <= ids) == host.startswith("db-"), (host, ids & upgrades)
    assert "base-sshd-old-dropin-absent" in ids
    if family == "RedHat":
        assert "base-selinux-enforcing" in ids and "base-selinux-haproxy-connect-any" in ids
        assert {"base-firewalld-dead", "base-firewalld-masked"} <= ids
        assert states["base-chrony-running"]["service"][0] == {"name": "chronyd"} or \
            {"name": "chronyd"} in states["base-chrony-running"]["service"]
    else:
        assert not any(i.startswith(("base-selinux", "base-firewalld", "base-dnf-module")) for i in ids)


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
    assert "runs the OS family Solaris, but the topology says Debian; known: Debian, RedHat" in res.stdout + res.stderr


def test_debian_haproxy_accepts_the_debian_render(tmp):
    """The lab's HAProxy (Debian 12's 2.6) parses app-01's haproxy.cfg as Debian renders it."""
    res = salt_call(tmp, "app-01", "Debian", "state.show_sls", "haproxy.config")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    context = arg(json.loads(res.stdout)["local"], "haproxy-config-file", "context")
    cfg = render_template(tmp, "app-01", "haproxy/files/haproxy.cfg.jinja", tag="debian", **context)
    assert "http-request use-service prometheus-exporter if { path /metrics }" in cfg
    res = haproxy_check(cfg, tmp / "haproxy-check-debian")
    assert res.returncode == 0, res.stdout + res.stderr


def test_debian_pgbouncer_keeps_postgres_and_its_folders(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "pgbouncer.config")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    states = json.loads(res.stdout)["local"]
    assert arg(states, "pgbouncer-config-file", "user") == "postgres" and "pgbouncer-tls-key" not in states
    ini = render_template(tmp, "db-01", "pgbouncer/files/pgbouncer.ini.jinja", tag="debian",
                          **arg(states, "pgbouncer-config-file", "context")).splitlines()
    for line in ("unix_socket_dir = /var/run/postgresql", "logfile = /var/log/postgresql/pgbouncer.log",
                 "pidfile = /var/run/postgresql/pgbouncer.pid", "client_tls_key_file = /etc/halite/tls/postgres.key"):
        assert line in ini, line


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


#: pillar an orchestration needs to render at all
ORCH_PILLAR = {"etcd_member": '{"target": "db-03", "replace": true}',
               "restore_point": '{"name": "before-42"}', "restore": '{"target": {"name": "before-42"}}'}


@pytest.mark.parametrize("sls", sorted(p.stem for p in (REPO / "salt/orch").glob("*.sls")))
def test_orchestrations_render(tmp, sls):
    extra = [f"pillar={ORCH_PILLAR[sls]}"] if sls in ORCH_PILLAR else []
    res = salt_call(tmp, "control", "Debian", "state.show_sls", f"orch.{sls}", *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    steps = json.loads(res.stdout)["local"]
    # salt.state / salt.function steps, or halite_ssh.function (etc/salt/orchstates)
    assert steps and all("salt" in step or "halite_ssh" in step for step in steps.values()), steps


def orch_steps(tmp, sls, pillar):
    res = salt_call(tmp, "control", "Debian", "state.show_sls", f"orch.{sls}", f"pillar={json.dumps(pillar)}")
    return res, (json.loads(res.stdout)["local"] if res.returncode == 0 else None)


def step_args(step: dict) -> dict:
    out = {}
    for item in step.get("salt") or step["halite_ssh"]:
        if isinstance(item, dict):
            out.update(item)
    return out


def _deploy_layout(steps: dict) -> tuple[dict, dict]:
    """orch.deploy's steps: which run in parallel, and what each requires."""
    args = {sid: step_args(step) for sid, step in steps.items()}
    parallel = {sid: a.get("parallel", False) for sid, a in args.items()}
    needs = {sid: [r["salt"] for r in a.get("require", [])] for sid, a in args.items()}
    return parallel, needs


def test_deploy_runs_the_side_steps_beside_the_database_chain(tmp):
    """The old server and the repository's host run in parallel with etcd and Patroni; each is
    required by a later step that is not parallel, so every one has ended before the wipe
    (order: last). Prometheus starts only after the exporters (early, it would fire
    ScrapeTargetDown for every exporter not there yet)."""
    res, steps = orch_steps(tmp, "deploy", {})
    assert res.returncode == 0, res.stdout + res.stderr
    parallel, needs = _deploy_layout(steps)
    side = {"deploy-site-legacy", "deploy-repository"}
    assert {sid for sid, on in parallel.items() if on} == side
    for sid in side:
        waiting = [s for s, req in needs.items() if sid in req and not parallel[s]]
        assert waiting, f"{sid} is required by no serial step: the wipe could run before it ends"
    assert "deploy-repository" in needs["deploy-patroni"]
    assert "deploy-site-legacy" in needs["deploy-haproxy"]  # app-01: the old server's host
    assert step_args(steps["deploy-monitoring"])["sls"] == ["monitoring.server", "monitoring.dashboard",
                                                           "monitoring.healthy"]
    assert needs["deploy-monitoring"] == ["deploy-exporters"]


def test_deploy_keeps_a_side_step_in_line_when_it_shares_a_host(tmp):
    """The old server on the repository's host: both steps on backup-01 at once would share
    salt-ssh's files there, so neither runs in parallel."""
    topo = yaml.safe_load((REPO / "pillar/topology.yaml").read_text())
    topo["hosts"]["backup-01"]["roles"].append("legacy_db")
    topo["hosts"]["app-01"]["roles"].remove("legacy_db")
    path = tmp / "topology-shared.yaml"
    path.write_text(yaml.safe_dump(topo))
    res = salt_call(tmp, "control", "Debian", "state.show_sls", "orch.deploy", topology=path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    parallel, _ = _deploy_layout(json.loads(res.stdout)["local"])
    assert parallel["deploy-repository"] is False and parallel["deploy-site-legacy"] is False


def test_etcd_member_orchestration_order(tmp):
    res, steps = orch_steps(tmp, "etcd_member", {"target": "db-02", "replace": True})
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(steps) == {"etcd-member-base", "etcd-member-reset", "etcd-member-join",
                             "etcd-member-refresh-db-01", "etcd-member-refresh-db-03"}
    join = step_args(steps["etcd-member-join"])
    assert join["tgt"] == "db-02" and join["sls"] == ["etcd.join", "etcd.healthy"]
    assert join["pillar"] == {"halite": {"etcd": {"initial_cluster_state": "existing"}}}
    assert join["require"] == [{"salt": "etcd-member-reset"}]
    assert step_args(steps["etcd-member-reset"])["tgt"] == "db-02"
    # the other members one at a time, after the join
    assert step_args(steps["etcd-member-refresh-db-01"])["require"] == [{"salt": "etcd-member-join"}]
    assert step_args(steps["etcd-member-refresh-db-03"])["require"] == [{"salt": "etcd-member-refresh-db-01"}]


def test_etcd_member_orchestration_without_replace_keeps_the_data(tmp):
    res, steps = orch_steps(tmp, "etcd_member", {"target": "db-03"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "etcd-member-reset" not in steps
    assert step_args(steps["etcd-member-join"])["require"] == [{"salt": "etcd-member-base"}]


@pytest.mark.parametrize("pillar, message", [
    ({}, "say which host joins"),
    ({"target": "app-01"}, "app-01 is not an etcd host (the db role) in the topology; etcd hosts: db-01, db-02, db-03"),
])
def test_etcd_member_orchestration_refuses_bad_targets(tmp, pillar, message):
    res, _ = orch_steps(tmp, "etcd_member", pillar)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


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


def test_etcd_join_asks_the_other_members_and_starts_as_existing(tmp):
    res = salt_call(tmp, "db-03", "Debian", "state.show_sls", "etcd.join",
                    'pillar={"halite": {"etcd": {"initial_cluster_state": "existing"}}}')
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    args = step_args({"salt": states["etcd-member-registered"]["etcd_member"]})
    assert args["peer_url"] == "https://10.77.1.13:2380"  # etcd's peers speak TLS by default
    assert args["peers"] == ["10.77.1.11", "10.77.1.12"]
    assert args["require_in"] == [{"file": "etcd-config-file"}]
    config = step_args({"salt": states["etcd-config-file"]["file"]})
    assert config["context"]["initial_cluster_state"] == "existing"


def test_etcd_join_without_the_orchestration_pillar_stops(tmp):
    res = salt_call(tmp, "db-03", "Debian", "state.show_sls", "etcd.join")
    assert res.returncode != 0
    assert "needs pillar halite:etcd:initial_cluster_state=existing" in res.stdout + res.stderr


def test_plain_etcd_run_on_a_fresh_host_bootstraps_a_new_cluster(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "etcd.config")
    assert res.returncode == 0, res.stdout + res.stderr
    config = step_args({"salt": json.loads(res.stdout)["local"]["etcd-config-file"]["file"]})
    assert config["context"]["initial_cluster_state"] == "new"


def test_etcd_reset_stops_removes_then_moves_the_data_aside(tmp):
    res = salt_call(tmp, "db-03", "Debian", "state.show_sls", "etcd.reset")
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    removed = step_args({"salt": states["etcd-member-removed"]["etcd_member"]})
    assert removed["require"] == [{"service": "etcd-stopped-for-replace"}]
    moved = step_args({"salt": states["etcd-data-moved-aside"]["cmd"]})
    assert moved["name"].startswith("mv /var/lib/etcd/halite /var/lib/etcd/halite.replaced-")
    assert moved["require"] == [{"etcd_member": "etcd-member-removed"}]


@pytest.mark.parametrize("host", ["app-01", "db-01"])
def test_nftables_rules_print_the_access_table_with_destination_addresses(tmp, host):
    """Each rule of the host's view becomes one nftables line; a service opened on one
    network (HAProxy's stats page) also names the destination address."""
    res = salt_call(tmp, host, "Debian", "state.show_sls", "base.nftables")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    context = json.loads(res.stdout)["local"]["base-nftables-config"]["file"]
    context = next(a for a in context if isinstance(a, dict) and "context" in a)["context"]
    dest = tmp / f"{host}-nftables.conf"
    res = salt_call(tmp, host, "Debian", "cp.get_template", "salt://base/files/nftables.conf.jinja", str(dest),
                    *[k + "=" + json.dumps(v) for k, v in context.items()])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = [line.strip() for line in dest.read_text().splitlines() if "accept comment" in line]
    assert len(lines) == len(context["rules"])
    if host == "app-01":
        assert ('tcp dport { 7000 } ip saddr { 10.77.0.10, 10.77.0.40, 10.77.1.10, 10.77.1.40 } ip daddr { 10.77.1.20 } '
                'accept comment "haproxy-stats"') in lines
        assert 'tcp dport { 80, 443 } ip saddr { 10.77.0.1 } accept comment "web-http"' in lines
    # node-exporter listens on the private address only: the rule names it (the edge's stays shut)
    own = {"app-01": "10.77.1.20", "db-01": "10.77.1.11"}[host]
    assert (f'tcp dport {{ 9100 }} ip saddr {{ 10.77.0.40, 10.77.1.40 }} ip daddr {{ {own} }} '
            'accept comment "node-exporter"') in lines
    if host != "app-01":
        assert [line for line in lines if "daddr" in line] == [line for line in lines if "node-exporter" in line]
