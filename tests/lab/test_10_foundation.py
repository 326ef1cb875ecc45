"""The lab and the base layer: reachability through the jump host only,
default-drop firewalls, idempotent states."""
import subprocess
from pathlib import Path

import pytest

from labkit import BIN, run, salt_ssh, state_summary
from halite import config, lab as labmod

pytestmark = pytest.mark.lab
TOPO = config.load()["topology"]
HOSTS = sorted(TOPO["hosts"])


def test_lab_status_lists_every_host_running(lab):
    res = run([BIN / "halite", "lab", "status"], check=True)
    for host in HOSTS:
        line = [l for l in res.stdout.splitlines() if l.startswith(host + " ")]
        assert line and " running " in line[0], res.stdout


def test_salt_ssh_pings_all_five_hosts_through_the_jump_host(lab):
    rc, data = salt_ssh("*", "test.ping")
    assert rc == 0, data
    assert data == {h: True for h in HOSTS}


def test_control_machine_cannot_reach_db_hosts_directly(lab):
    key = str(labmod.KEY)
    direct = subprocess.run(
        ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", f"UserKnownHostsFile={labmod.KNOWN_HOSTS}",
         "-o", "StrictHostKeyChecking=yes", "root@10.77.1.11", "true"], capture_output=True, text=True, timeout=30)
    assert direct.returncode != 0
    assert "no route to host" in direct.stderr.lower(), direct.stderr  # the unreachable route answers at once
    via_jump = run([BIN / "halite", "lab", "ssh", "db-01", "hostname"], check=True)
    assert via_jump.stdout.strip() == "db-01"


def test_unknown_host_keys_are_refused(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    res = subprocess.run(["ssh", "-i", str(labmod.KEY), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={empty}",
                          "-o", "StrictHostKeyChecking=yes", "root@10.77.0.10", "true"], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "host key" in res.stderr.lower(), res.stderr


def test_salt_ssh_trusts_what_halite_hosts_trust_recorded_when_the_lab_came_up(lab):
    """The roster's known_hosts is not the lab's own record of the keys it made: `halite lab up`
    filled it with `halite hosts trust`, and it holds every host's keys under every name."""
    from halite import hosts, roster

    trusted = Path(roster.access(TOPO)["known_hosts"])
    assert trusted != labmod.KNOWN_HOSTS and trusted.exists()
    recorded, lab_keys = hosts.read_known(trusted), hosts.read_known(labmod.KNOWN_HOSTS)
    for host in HOSTS:
        for name in [host, *TOPO["hosts"][host]["addresses"].values()]:
            assert recorded[name] == lab_keys[name], (host, name)


def test_hosts_trust_records_every_hosts_keys_through_the_jump_host_as_the_lab_has_them(lab, tmp_path):
    """First contact the way a site does it: the jump host's keys scanned from here, the others
    on the jump host over a checked session; the same keys the lab put in its own known_hosts."""
    from halite import hosts

    topo = dict(TOPO, access={**TOPO.get("access", {}), "known_hosts": str(tmp_path / "known_hosts")})
    shown = []
    path = hosts.trust(topo, confirm=lambda question: shown.append(question) or True, out=open(tmp_path / "out", "w"))
    out = (tmp_path / "out").read_text()
    assert len(shown) == 2, out  # the jump host, then the others: each batch confirmed
    assert "scanned on jump-01" in out and out.count("SHA256:") == len(HOSTS), out
    recorded, lab_keys = hosts.read_known(path), hosts.read_known(labmod.KNOWN_HOSTS)
    for host in HOSTS:
        for name in [host, *TOPO["hosts"][host]["addresses"].values()]:
            assert recorded[name] == lab_keys[name], (host, name)
    # again: nothing new to confirm
    hosts.trust(topo, confirm=lambda question: pytest.fail("asked again"), out=open(tmp_path / "out2", "w"))
    assert "already recorded" in (tmp_path / "out2").read_text()
    # a recorded key that differs (a rebuilt host, or someone in the middle) stops it
    text = path.read_text().splitlines()
    db01 = next(i for i, line in enumerate(text) if line.startswith("db-01,"))
    fake = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "fake")], check=True)
    assert fake.returncode == 0
    text[db01] = text[db01].rsplit(" ", 1)[0] + " " + (tmp_path / "fake.pub").read_text().split()[1]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(RuntimeError, match="db-01 .* now shows another ssh-ed25519 key"):
        hosts.trust(topo, confirm=lambda question: True, out=open(tmp_path / "out3", "w"))


def test_nftables_default_drop_on_every_host(deployed):
    rc, data = salt_ssh("*", "cmd.run", "nft list chain inet halite input")
    assert rc == 0, data
    for host in HOSTS:
        assert "policy drop;" in data[host], (host, data[host])
        assert 'comment "ssh"' in data[host]


def test_db_host_ssh_only_from_the_jump_host(deployed):
    # app-01 is on the private network too, but is not the jump host: db-01 drops it.
    res = run([BIN / "halite", "lab", "ssh", "app-01",
               "timeout 5 bash -c 'echo > /dev/tcp/10.77.1.11/22' && echo open || echo closed"], check=True)
    assert res.stdout.strip().endswith("closed"), res.stdout
    res = run([BIN / "halite", "lab", "ssh", "jump-01",
               "timeout 5 bash -c 'echo > /dev/tcp/10.77.1.11/22' && echo open || echo closed"], check=True)
    assert res.stdout.strip().endswith("open"), res.stdout


def test_ssh_is_keys_only(deployed):
    rc, data = salt_ssh("*", "cmd.run", "sshd -T | grep -E '^(passwordauthentication|kbdinteractiveauthentication|permitrootlogin) '")
    assert rc == 0
    for host in HOSTS:
        assert "passwordauthentication no" in data[host]
        assert "kbdinteractiveauthentication no" in data[host]
        # the lab's hosts are like a provider's image: halite logs in as "admin" with sudo and
        # keeps root's own login refused (prohibit-password only where root is the login user)
        want = "permitrootlogin no" if TOPO["access"]["user"] != "root" else "permitrootlogin without-password"
        assert want in data[host], (host, data[host])


def test_the_lab_hosts_are_like_a_providers_image_and_root_cannot_log_in(lab):
    """What the real-host path must live with: a named user with passwordless sudo, root refused
    with cloud-init's message, cloud-init's sshd file allowing passwords, automatic updates on."""
    user = TOPO["access"]["user"]
    assert user != "root"
    res = subprocess.run(["ssh", "-i", str(labmod.KEY), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                          "-o", f"UserKnownHostsFile={labmod.KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
                          "root@10.77.0.10", "id"], capture_output=True, text=True, timeout=30)
    # before base.ssh, cloud-init's refusal (its message, exit 142); after, sshd's (PermitRootLogin no)
    assert (res.returncode == 142 and f'Please login as the user "{user}" rather than the user "root".' in res.stdout
            or res.returncode == 255 and "Permission denied (publickey)" in res.stderr), res
    res = run([BIN / "halite", "lab", "ssh", "db-01",
               "id -un; cat /etc/ssh/sshd_config.d/50-cloud-init.conf /etc/apt/apt.conf.d/20auto-upgrades"], check=True)
    assert res.stdout.splitlines()[0] == "root"  # through the login user's sudo
    assert "PasswordAuthentication yes" in res.stdout and 'Unattended-Upgrade "1"' in res.stdout


def test_a_cloud_init_dropin_that_allows_passwords_does_not_win(deployed):
    """sshd keeps the first value it reads: halite's 00-halite.conf sorts before the image's
    50-cloud-init.conf (here also allowing root), and sshd -T shows halite's values."""
    dropin = "/etc/ssh/sshd_config.d/50-cloud-init.conf"
    rc, data = salt_ssh("db-01", "file.read", dropin)
    assert rc == 0 and data["db-01"] == "PasswordAuthentication yes\n", data  # as the lab's "image" has it
    rc, data = salt_ssh("db-01", "file.write", dropin, "PasswordAuthentication yes\nPermitRootLogin yes\n")
    assert rc == 0, data
    try:
        rc, data = salt_ssh("db-01", "cmd.run", "sshd -T")
        assert rc == 0, data
        assert "passwordauthentication no" in data["db-01"].splitlines()
        assert "permitrootlogin no" in data["db-01"].splitlines()
    finally:
        salt_ssh("db-01", "file.write", dropin, "PasswordAuthentication yes")


def test_db_hosts_take_no_unattended_upgrades_and_restart_nothing(deployed):
    rc, data = salt_ssh("db-*", "cmd.run", "apt-config dump APT::Periodic::Unattended-Upgrade; "
                        "cat /etc/needrestart/conf.d/99-halite.conf")
    assert rc == 0, data
    for host in ("db-01", "db-02", "db-03"):
        assert 'APT::Periodic::Unattended-Upgrade "0";' in data[host], data[host]
        assert "$nrconf{restart} = 'l';" in data[host], data[host]
    rc, data = salt_ssh("jump-01", "file.file_exists", "/etc/apt/apt.conf.d/99halite-no-unattended-upgrades")
    assert data == {"jump-01": False}


def test_etcd_runs_with_compaction_and_a_quota(deployed):
    settings = config.load()["etcd"]
    rc, data = salt_ssh("db-*", "cmd.run", "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value etcd)/environ")
    assert rc == 0, data
    for host in ("db-01", "db-02", "db-03"):
        env = data[host].splitlines()
        assert f"ETCD_AUTO_COMPACTION_MODE={settings['auto_compaction_mode']}" in env, env
        assert f"ETCD_AUTO_COMPACTION_RETENTION={settings['auto_compaction_retention']}" in env, env
        assert f"ETCD_QUOTA_BACKEND_BYTES={settings['quota_backend_bytes']}" in env, env


def test_second_state_apply_reports_zero_changes(deployed):
    rc, data = salt_ssh("*", "state.apply")
    summary = state_summary(data)
    assert rc == 0, summary
    for host in HOSTS:
        assert summary[host]["failed"] == [], (host, summary[host]["failed"])
        assert summary[host]["changed"] == {}, (host, summary[host]["changed"])
        assert summary[host]["total"] > 10


def test_dry_run_on_a_converged_host_has_nothing_to_do(deployed):
    rc, data = salt_ssh("*", "state.apply", "test=True")
    summary = state_summary(data)
    assert rc == 0, summary
    for host in HOSTS:
        assert summary[host]["none"] == [], (host, summary[host]["none"])
        assert summary[host]["changed"] == {}, (host, summary[host]["changed"])


#: Files each role's states manage: none may change when the pillar is bad.
WATCHED = {"jump-01": ["/etc/nftables.conf", "/etc/ssh/sshd_config.d/00-halite.conf"],
           "db-01": ["/etc/nftables.conf", "/etc/patroni/patroni.yml", "/etc/pgbouncer/pgbouncer.ini", "/etc/default/etcd"],
           "app-01": ["/etc/nftables.conf", "/etc/haproxy/haproxy.cfg"]}


def _mtimes() -> dict:
    out = {}
    for host, paths in WATCHED.items():
        rc, data = salt_ssh(host, "cmd.run", "stat -c '%n %.9Y' " + " ".join(paths))
        assert rc == 0, data
        lines = data[host].splitlines()
        assert len(lines) == len(paths), data
        out.update({(host, line.split()[0]): line.split()[1] for line in lines})
    return out


def test_bad_pillar_stops_before_any_host_changes(deployed, tmp_path):
    """Three mistakes of different kinds: each named on every host, nothing applied anywhere."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("patroni: {dcs: {tll: 20}}\nhaproxy: {write_port: '5000'}\npgbouncr: {}\n")
    before = _mtimes()
    rc, data = salt_ssh("*", "state.apply", env={"HALITE_SETTINGS": str(bad)})
    assert rc != 0
    for host in HOSTS:
        text = str(data.get(host))
        assert "patroni.dcs.tll: unknown key; did you mean 'ttl'?" in text, (host, text[:2000])
        assert "haproxy.write_port: is '5000' (a string); expected an integer" in text, (host, text[:2000])
        assert "pgbouncr: unknown key; did you mean 'pgbouncer'?" in text, (host, text[:2000])
    # the orchestration stops too, before its first step
    res = run([BIN / "salt-run", "state.orchestrate", "orch.deploy"], env={"HALITE_SETTINGS": str(bad)}, timeout=600)
    assert res.returncode != 0
    assert "patroni.dcs.tll: unknown key" in res.stdout + res.stderr, (res.stdout + res.stderr)[-3000:]
    assert "deploy-base" not in res.stdout, res.stdout[-3000:]
    assert _mtimes() == before
