"""The roster (halite/roster.py): who logs in where, with which key and known_hosts,
said once by the topology (``topology.access``, a host's ``user``); the preflight
script that gives salt-ssh a Python it can use, run for real with stand-in programs."""
from __future__ import annotations

import copy
import os
import stat
import subprocess
from pathlib import Path

import pytest

from halite import config, roster

from conftest import good  # noqa: F401  (the shipped description)


def topo_of(good, **access) -> dict:
    topo = copy.deepcopy(good[0])
    topo["access"] = {**topo.get("access", {}), **access}
    return config.load(topo, copy.deepcopy(good[1]), generate=False)["topology"]


def test_the_lab_logs_in_as_its_image_user_with_its_own_key_and_host_keys(good):
    acc = roster.access(good[0])
    assert acc == {"key": str(roster.LAB_SSH_DIR / "id_ed25519"), "known_hosts": str(roster.LAB_SSH_DIR / "trusted_hosts"),
                   "users": {h: "admin" for h in good[0]["hosts"]}}
    r = roster.roster(good[0])
    assert all(e["user"] == "admin" and e["sudo"] is True for e in r.values())
    assert r["db-01"]["ssh_options"][0] == f"UserKnownHostsFile={roster.LAB_SSH_DIR / 'trusted_hosts'}"


def test_root_logs_in_without_sudo(good):
    topo = topo_of(good, user="root")
    r = roster.roster(topo)
    assert all(e["user"] == "root" and "sudo" not in e for e in r.values())
    assert r["db-01"]["ssh_options"][-1].endswith('-W %h:%p root@10.77.0.10"')


def test_a_site_takes_its_key_and_known_hosts_from_the_topology_or_its_own_folder(good):
    topo = copy.deepcopy(good[0])
    topo["name"] = "shop"
    acc = roster.access(topo)
    assert acc["known_hosts"] == str(config.REPO / ".halite" / "shop" / "known_hosts")
    assert acc["key"] == str(Path("~/.ssh/id_ed25519").expanduser())
    topo["access"] = {"key": "/home/ops/.ssh/shop", "known_hosts": "/home/ops/.ssh/shop_known_hosts"}
    r = roster.roster(topo)
    opts = " ".join(r["db-02"]["ssh_options"])
    assert r["db-02"]["priv"] == "/home/ops/.ssh/shop"
    assert "UserKnownHostsFile=/home/ops/.ssh/shop_known_hosts" in opts
    assert "ProxyCommand=ssh -i /home/ops/.ssh/shop -o UserKnownHostsFile=/home/ops/.ssh/shop_known_hosts" in opts


def test_a_named_login_user_runs_salt_through_sudo_and_reaches_the_others_through_the_jump_host_as_itself(good):
    topo = topo_of(good, user="admin")
    topo["hosts"]["db-03"]["user"] = "almalinux"
    r = roster.roster(topo)
    assert r["jump-01"]["user"] == "admin" and r["jump-01"]["sudo"] is True
    assert r["db-03"]["user"] == "almalinux" and r["db-03"]["sudo"] is True
    for host in ("db-01", "db-03"):
        assert any(o.endswith('-W %h:%p admin@10.77.0.10"') for o in r[host]["ssh_options"]), r[host]


@pytest.mark.parametrize("user", ["Admin", "ad min", "root;id", "-oProxyCommand=x", ""])
def test_a_bad_login_user_is_refused(good, user):
    topo, settings = copy.deepcopy(good)
    topo["access"] = {"user": user}
    with pytest.raises(config.ConfigError) as info:
        config.load(topo, settings, generate=False)
    assert [k for k, _ in info.value.problems] == ["topology.access.user"]
    assert "a login name is lower-case letters" in info.value.problems[0][1]


def test_only_hosts_whose_python_may_be_too_old_run_the_preflight(good):
    topo = copy.deepcopy(good[0])
    topo["hosts"]["db-02"]["os_family"] = "RedHat"
    r = roster.roster(topo)
    assert r["db-02"]["ssh_pre_flight"] == str(roster.PREFLIGHT) and Path(r["db-02"]["ssh_pre_flight"]).is_file()
    assert r["db-02"]["set_path"] == f"{roster.PREFLIGHT_BIN}:$PATH"
    assert "ssh_pre_flight" not in r["db-01"] and "set_path" not in r["db-01"]


# ---------------------------------------------------------------------------
# the preflight script, run by /bin/sh with stand-in python and dnf programs


def fake(dir_: Path, name: str, body: str) -> None:
    path = dir_ / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def fake_python(dir_: Path, name: str, version: tuple[int, int]) -> None:
    # answers the script's one question: is sys.version_info at least (3, 10)?
    fake(dir_, name, f"test {int(version >= (3, 10))} -eq 1\n")


def preflight(tmp_path: Path, bindir: Path) -> subprocess.CompletedProcess:
    link = tmp_path / "halite-bin"
    env = {"PATH": str(bindir), "HALITE_PREFLIGHT_BIN": str(link), "HOME": str(tmp_path)}
    return subprocess.run(["/bin/sh", str(roster.PREFLIGHT)], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def bindir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    return d


def only(bindir: Path, tmp_path: Path) -> Path:
    """The one folder of the script's PATH: the stand-ins and the shell tools it uses, nothing
    else (no python or dnf of this machine is found)."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("id", "hostname", "readlink", "mkdir", "ln"):
        real = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        os.symlink(real, tools / tool)
    for item in bindir.iterdir():
        os.symlink(item, tools / item.name)
    return tools


def test_preflight_links_a_new_enough_python_and_leaves_the_platforms_alone(tmp_path, bindir):
    fake_python(bindir, "python3", (3, 6))
    fake_python(bindir, "python3.11", (3, 11))
    res = preflight(tmp_path, only(bindir, tmp_path))
    assert res.returncode == 0, res.stderr
    assert os.readlink(tmp_path / "halite-bin" / "python3") == str(tmp_path / "tools" / "python3.11")
    assert res.stderr == ""
    # a second run changes nothing and says nothing
    before = (tmp_path / "halite-bin" / "python3").lstat().st_mtime_ns
    assert preflight(tmp_path, tmp_path / "tools").returncode == 0
    assert (tmp_path / "halite-bin" / "python3").lstat().st_mtime_ns == before


def test_preflight_installs_python311_with_dnf_when_the_platform_has_only_an_old_one(tmp_path, bindir):
    fake_python(bindir, "python3", (3, 6))
    log = tmp_path / "dnf.log"
    # the stand-in dnf "installs" python3.11 into the same folder
    fake(bindir, "dnf", f'echo "$@" >> {log}\nprintf "#!/bin/sh\\nexit 0\\n" > {bindir}/python3.11\n'
                        f'/bin/chmod +x {bindir}/python3.11\n/bin/ln -sf {bindir}/python3.11 {tmp_path}/tools/python3.11\n')
    res = preflight(tmp_path, only(bindir, tmp_path))
    assert res.returncode == 0, res.stderr
    assert log.read_text().split() == ["-q", "-y", "install", "python3.11"]
    assert "no Python 3.10 or newer; installing python3.11 with dnf" in res.stderr
    assert os.readlink(tmp_path / "halite-bin" / "python3").endswith("python3.11")


def test_preflight_stops_with_one_message_when_no_python_can_be_had(tmp_path, bindir):
    fake_python(bindir, "python3", (3, 9))
    res = preflight(tmp_path, only(bindir, tmp_path))
    assert res.returncode == 1
    assert "has no Python 3.10 or newer, which Salt 3008 needs; install one (python3.11 on AlmaLinux/RHEL 8 and 9)" \
        in res.stderr
    assert not (tmp_path / "halite-bin").exists()
