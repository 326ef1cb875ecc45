"""Day-2 operations in the lab: an etcd member replaced and joined again by
orch.etcd_member, and a restart-only setting rolled out by orch.rolling_restart
(replicas first, the leader last after a switchover)."""
import json

import pytest
import yaml

from halite import config
from labkit import BIN, healthy_cluster, patroni_members, run, salt_ssh, wait_for

pytestmark = pytest.mark.lab
DATA = config.load()
TOPO = DATA["topology"]
DB_HOSTS = config.hosts_with_role(TOPO, "db")


def orchestrate(sls: str, pillar: dict | None = None, env: dict | None = None, timeout: float = 1200):
    cmd = [BIN / "salt-run", "state.orchestrate", sls, "--out=json"]
    if pillar is not None:
        cmd.append(f"pillar={json.dumps(pillar)}")
    return run(cmd, timeout=timeout, env=env)


def changed_states(res) -> dict:
    """{(step, host): {state id: changes}} from salt-run's JSON."""
    steps = json.loads(res.stdout)["data"]
    out = {}
    for step in next(iter(steps.values())).values():
        for host, ret in (step.get("changes") or {}).get("ret", {}).items():
            if isinstance(ret, dict):
                changed = {k.split("_|-")[1]: v["changes"] for k, v in ret.items()
                           if isinstance(v, dict) and v.get("changes")}
                if changed:
                    out[(step["__id__"], host)] = changed
    return out


def etcd_members() -> list[dict]:
    rc, data = salt_ssh(DB_HOSTS[0], "etcd_cluster.members")
    assert rc == 0, data
    return data[DB_HOSTS[0]]


def test_etcd_member_replaced_and_joined_again(deployed):
    wait_for(healthy_cluster, 180, 2, "a healthy Patroni cluster")
    target = DB_HOSTS[-1]
    before = {m["name"]: m["id"] for m in etcd_members()}
    res = orchestrate("orch.etcd_member", {"target": target, "replace": True})
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    changes = changed_states(res)
    assert "etcd-member-removed" in changes[("etcd-member-reset", target)]
    added = changes[("etcd-member-join", target)]["etcd-member-registered"]["member"]["new"]
    after = {m["name"]: m for m in etcd_members()}
    assert sorted(after) == sorted(before), after
    assert all(m["started"] and not m["is_learner"] for m in after.values()), after
    assert after[target]["id"] == added["id"] != before[target], (before, after)
    rc, data = salt_ssh(DB_HOSTS[0], "etcd_cluster.health")
    assert data[DB_HOSTS[0]]["healthy"] is True and data[DB_HOSTS[0]]["started"] == len(DB_HOSTS), data
    rc, data = salt_ssh(target, "cmd.run", f"ls -d {DATA['etcd']['data_dir']}.replaced-*")
    assert rc == 0 and ".replaced-" in data[target], data  # the old data is kept, not deleted
    wait_for(healthy_cluster, 120, 2, "Patroni still healthy")

    # joining again when already a member changes nothing anywhere
    res = orchestrate("orch.etcd_member", {"target": target})
    assert res.returncode == 0, res.stdout[-6000:]
    assert changed_states(res) == {}


def test_etcd_member_refuses_a_host_outside_the_etcd_role(deployed):
    res = orchestrate("orch.etcd_member", {"target": "app-01"})
    assert res.returncode != 0
    assert "app-01 is not an etcd host" in res.stdout + res.stderr


def setting_on(host: str, name: str) -> str:
    """A PostgreSQL setting as the server on ``host`` reports it (local socket, peer auth)."""
    rc, data = salt_ssh(host, "cmd.run", f"psql -Atc 'SHOW {name}'", "runas=postgres")
    assert rc == 0, data
    return data[host].strip()


def test_restart_only_setting_rolls_out_replicas_first_leader_last(deployed, tmp_path):
    leader_before = wait_for(healthy_cluster, 180, 2, "a healthy Patroni cluster")
    default = DATA["postgresql"]["parameters"]["shared_buffers"]
    override = tmp_path / "buffers.yaml"
    override.write_text(yaml.safe_dump({"postgresql": {"parameters": {"shared_buffers": "160MB"}}}))
    try:
        res = orchestrate("orch.rolling_restart", env={"HALITE_SETTINGS": str(override)})
        assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
        assert all(setting_on(h, "shared_buffers") == "160MB" for h in DB_HOSTS)
        ms = patroni_members()
        assert not [m["name"] for m in ms if m.get("pending_restart")], ms
        leader_after = wait_for(healthy_cluster, 120, 2, "a healthy cluster after the rolling restart")
        # the old leader handed over rather than restarting as primary
        assert leader_after != leader_before
        steps = json.loads(res.stdout)["data"]
        result = [s for s in next(iter(steps.values())).values() if s["__id__"] == "rolling-restart-members"][0]
        done = next(iter(result["changes"]["ret"].values()))
        assert done["restarted"][-1] == leader_before and sorted(done["restarted"]) == sorted(DB_HOSTS), done
        assert done["switchover"], done
    finally:
        res = orchestrate("orch.rolling_restart")
    assert res.returncode == 0, res.stdout[-6000:]
    assert all(setting_on(h, "shared_buffers") == default for h in DB_HOSTS)
