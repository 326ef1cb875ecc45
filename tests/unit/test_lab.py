"""The lab's images and mirrors per Debian release (halite/lab.py), without
building or booting anything."""
import json

import pytest

from halite import config, lab

#: What the bookworm mirror's marker holds (the packages of monitoring added to what it held
#: before releases): a lab's cached mirror is reused while it is unchanged.
BOOKWORM_MARKER = json.dumps([
    ["chrony", "nftables", "postgresql-15", "postgresql-client-15", "etcd-server", "etcd-client",
     "haproxy", "pgbouncer", "python3-venv", "python3-pip", "libpq5", "curl", "rsync", "sudo",
     "nginx", "openssl", "pgbackrest", "prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
     "prometheus-postgres-exporter", "prometheus-pgbouncer-exporter"],
    ["patroni[etcd3]==4.1.*", "psycopg[binary]>=3.2,<3.4", "psycopg-pool>=3.2,<3.4",
     "flask>=3.1,<3.2", "gunicorn>=23,<24"],
])


def test_bookworm_keeps_its_paths_and_its_cached_mirror():
    assert lab.image_dir("bookworm") == lab.ROOT / "images" / "bookworm" == lab.IMAGE_DIR
    assert lab.mirror_dir("bookworm") == lab.ROOT / "mirror" == lab.MIRROR_DIR
    assert json.dumps([lab.mirror_debs("bookworm"), lab.MIRROR_WHEELS]) == BOOKWORM_MARKER


def test_trixie_is_cached_beside_bookworm():
    assert lab.image_dir("trixie") == lab.ROOT / "images" / "trixie"
    assert lab.mirror_dir("trixie") == lab.ROOT / "mirror-trixie"
    debs = lab.mirror_debs("trixie")
    assert "postgresql-17" in debs and "postgresql-client-17" in debs
    assert not any("15" in d for d in debs)


def test_apt_sources_name_the_release_and_its_security_suite():
    assert lab.apt_sources("trixie").splitlines() == [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ]


def test_wheels_for_another_python_are_binary_wheels_of_its_abi():
    args = lab.wheel_download_args("3.13")
    assert "--only-binary=:all:" in args
    assert args[args.index("--python-version") + 1] == "3.13"
    assert ["--abi", "cp313"] == args[args.index("--abi"):args.index("--abi") + 2]
    assert "manylinux2014_x86_64" in args


def trixie_topology() -> dict:
    return config.read_yaml(config.PILLAR_DIR / "topology-trixie.yaml")


def test_each_host_boots_the_release_the_topology_names():
    topo = trixie_topology()
    assert lab.host_release(topo, "db-01") == "trixie"
    assert lab.host_release(topo, "app-01") == "bookworm"
    assert lab.topology_releases(topo) == ["trixie", "bookworm"]
    assert lab.topology_releases(topo, ["app-01"]) == ["bookworm"]


def test_a_host_without_a_release_boots_bookworm():
    topo = config.read_yaml(config.PILLAR_DIR / "topology.yaml")
    assert lab.topology_releases(topo) == ["bookworm"]


def test_the_lab_boots_debian_hosts_only():
    topo = trixie_topology()
    topo["hosts"]["db-01"]["os_family"] = "RedHat"
    with pytest.raises(RuntimeError, match="db-01: the lab boots Debian hosts only; the topology says RedHat"):
        lab.host_release(topo, "db-01")


def test_a_host_made_from_another_release_is_not_remounted(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "LAB_DIR", tmp_path)
    upper = tmp_path / "hosts" / "db-01" / "upper"
    (upper / "etc").mkdir(parents=True)
    state = {"hosts": {"db-01": {"release": "bookworm"}}}
    with pytest.raises(RuntimeError, match="made from the bookworm image and the topology now says trixie"):
        lab.prepare_host(trixie_topology(), "db-01", state)


def test_status_shows_each_hosts_release(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "STATE", tmp_path / "state.json")  # no lab here
    monkeypatch.setenv("HALITE_TOPOLOGY", str(config.PILLAR_DIR / "topology-trixie.yaml"))
    monkeypatch.setenv("HALITE_SETTINGS", str(config.PILLAR_DIR / "trixie.yaml"))
    rows = {r["host"]: r for r in lab.status()}
    assert {h: r["release"] for h, r in rows.items()} == {
        "jump-01": "trixie", "db-01": "trixie", "db-02": "trixie", "db-03": "trixie", "app-01": "bookworm",
        "backup-01": "trixie"}
    assert all(r["state"] == "stopped" for r in rows.values())


def test_a_container_whose_sshd_does_not_answer_is_reported_and_restarted_once(monkeypatch, capsys):
    calls = []

    def wait_ssh(topo, hosts, timeout=120):
        calls.append(("wait", list(hosts)))
        if len(calls) == 1:
            raise lab.SshTimeout(120, {"db-02": "Connection timed out during banner exchange"})

    monkeypatch.setattr(lab, "wait_ssh", wait_ssh)
    monkeypatch.setattr(lab, "_boot_report", lambda host, state: "degraded\nssh.service: active")
    monkeypatch.setattr(lab, "stop_host", lambda host, state: calls.append(("stop", host)))
    monkeypatch.setattr(lab, "start_host", lambda topo, host, state: calls.append(("start", host)))
    lab.wait_ssh_or_restart({}, ["jump-01", "db-01", "db-02"], {"hosts": {}})
    assert calls == [("wait", ["jump-01", "db-01", "db-02"]), ("stop", "db-02"), ("start", "db-02"),
                     ("wait", ["db-02"])]
    err = capsys.readouterr()
    text = err.out + err.err
    assert "db-02: sshd did not answer (ssh: Connection timed out during banner exchange); its boot:" in text
    assert "degraded" in text and "db-02: restarting its container once" in text


def test_a_container_that_does_not_answer_twice_fails_lab_up(monkeypatch):
    def wait_ssh(topo, hosts, timeout=120):
        raise lab.SshTimeout(120, {"db-02": ""})

    monkeypatch.setattr(lab, "wait_ssh", wait_ssh)
    monkeypatch.setattr(lab, "_boot_report", lambda host, state: "")
    monkeypatch.setattr(lab, "stop_host", lambda host, state: None)
    monkeypatch.setattr(lab, "start_host", lambda topo, host, state: None)
    with pytest.raises(lab.SshTimeout, match="sshd did not answer within 120s on: db-02"):
        lab.wait_ssh_or_restart({}, ["db-02"], {"hosts": {}})


def test_lab_up_refuses_limits_the_machine_cannot_give(monkeypatch):
    import copy
    import resource

    from halite import config, lab

    data = config.load()
    lab.check_open_file_limit(data)  # the lab's own settings fit this machine
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = 20000
        monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, hard))
    big = copy.deepcopy(data)
    big["haproxy"]["maxconn"] = hard
    with pytest.raises(RuntimeError, match=r"haproxy \(haproxy.maxconn\) would need .*pillar/lab.yaml"):
        lab.check_open_file_limit(big)
