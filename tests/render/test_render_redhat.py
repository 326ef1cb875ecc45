"""The RedHat family on paper (issue 16 item 4): what AlmaLinux 8 and RHEL 9 hosts get,
read from the rendered states and files (halite.platforms: FAMILIES, REDHAT_RELEASES,
SELINUX_*, host_facts). No RHEL host runs in the lab: these renders are the proof."""
import json
from pathlib import Path

import pytest

from rendering import arg, haproxy_check, salt_call

#: (osmajorrelease, os grain): AlmaLinux 8 and RHEL 9
RELEASES = [(8, "AlmaLinux"), (9, "RedHat")]

#: a PGDG repository as an operator gives it (halite.model.YumRepo)
PGDG = {"baseurl": "https://download.postgresql.org/pub/repos/yum/17/redhat/rhel-$releasever-$basearch",
        "gpgkey": "https://download.postgresql.org/pub/repos/yum/keys/PGDG-RPM-GPG-KEY-RHEL"}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-redhat")


@pytest.fixture(scope="module")
def settings(tmp):
    path = tmp / "repos.yaml"
    path.write_text(json.dumps({"packages": {"yum_repos": {"pgdg17": PGDG}}}))
    return path


def show(tmp, host, major, os_name, sls, settings=None) -> dict:
    res = salt_call(tmp, host, "RedHat", "state.show_sls", sls, major=major, os_name=os_name, settings=settings)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout)["local"]


def rendered(tmp, host, major, os_name, states, sid) -> str:
    """The file of state ``sid`` as the host would get it: its template with its context."""
    source = arg(states, sid, "source").removeprefix("salt://")
    context = arg(states, sid, "context")
    dest = tmp / f"{host}-{major}-{sid}"
    res = salt_call(tmp, host, "RedHat", "cp.get_template", f"salt://{source}", str(dest),
                    *[k + "=" + json.dumps(v, ensure_ascii=False) for k, v in context.items()],
                    major=major, os_name=os_name)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return dest.read_text()


@pytest.fixture(scope="module", params=RELEASES, ids=["alma8", "rhel9"])
def db(request, tmp, settings):
    major, os_name = request.param
    states = show(tmp, "db-01", major, os_name, "base,etcd,pgbouncer,patroni.install", settings)
    return major, os_name, states


@pytest.fixture(scope="module", params=RELEASES, ids=["alma8", "rhel9"])
def app(request, tmp):
    major, os_name = request.param
    return major, os_name, show(tmp, "app-01", major, os_name, "base,haproxy")


def test_etcd_reads_its_environment_from_etc_etcd(tmp, db):
    major, os_name, states = db
    assert arg(states, "etcd-config-file", "name") == "/etc/etcd/etcd.conf"
    text = rendered(tmp, "db-01", major, os_name, states, "etcd-config-file")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    # KEY="value" lines, as PGDG's unit reads them (EnvironmentFile=-/etc/etcd/etcd.conf)
    assert all(line.startswith("ETCD_") and "=\"" in line for line in lines), lines
    assert 'ETCD_NAME="db-01"' in lines
    assert 'ETCD_DATA_DIR="/var/lib/etcd/halite"' in lines
    assert 'ETCD_LISTEN_PEER_URLS="https://10.77.1.11:2380"' in lines


def test_nftables_ruleset_goes_where_redhats_unit_loads_it(db):
    _, _, states = db
    assert arg(states, "base-nftables-config", "name") == "/etc/sysconfig/nftables.conf"


def test_firewalld_is_stopped_and_masked_before_nftables_starts(db):
    _, _, states = db
    assert "dead" in states["base-firewalld-dead"]["service"]
    assert "masked" in states["base-firewalld-masked"]["service"]
    for sid in ("base-firewalld-dead", "base-firewalld-masked"):
        assert arg(states, sid, "name") == "firewalld"
        assert arg(states, sid, "require_in") == [{"service": "base-nftables-running"}]
    assert arg(states, "base-firewalld-dead", "enable") is False


def test_pgbouncer_runs_as_pgbouncer_with_pgdgs_folders(tmp, db):
    major, os_name, states = db
    for sid in ("pgbouncer-config-file", "pgbouncer-auth-file"):
        assert (arg(states, sid, "user"), arg(states, sid, "group")) == ("pgbouncer", "pgbouncer"), sid
    key = states["pgbouncer-tls-key"]["file"]
    assert {"name": "/etc/halite/tls/pgbouncer.key"} in key and {"user": "pgbouncer"} in key and {"mode": "0600"} in key
    ini = rendered(tmp, "db-01", major, os_name, states, "pgbouncer-config-file").splitlines()
    for line in ("unix_socket_dir = /tmp", "auth_file = /etc/pgbouncer/userlist.txt",
                 "logfile = /var/log/pgbouncer/pgbouncer.log", "pidfile = /var/run/pgbouncer/pgbouncer.pid",
                 "client_tls_key_file = /etc/halite/tls/pgbouncer.key"):
        assert line in ini, line
    assert not any("postgres.key" in line for line in ini)


def test_patroni_venv_is_built_with_python_311(db):
    _, _, states = db
    assert arg(states, "patroni-python-venv-package", "pkgs") == ["python3.11", "python3.11-pip"]
    assert arg(states, "patroni-virtualenv", "name") == "/usr/bin/python3.11 -m venv /opt/patroni"


def test_repositories_name_their_signing_key(db):
    _, _, states = db
    repo = states["base-yum-repo-pgdg17"]["pkgrepo"]
    assert {"baseurl": PGDG["baseurl"]} in repo and {"gpgkey": PGDG["gpgkey"]} in repo and {"gpgcheck": 1} in repo
    assert arg(states, "base-yum-repo-pgdg17", "require_in") == [{"pkg": "base-packages"}]


def test_the_postgresql_module_is_disabled_on_8_only(db):
    major, _, states = db
    sid = "base-dnf-module-postgresql-disabled"
    if major == 8:
        assert arg(states, sid, "name") == "dnf -qy module disable postgresql"
        assert arg(states, sid, "unless") == "grep -qx 'state=disabled' /etc/dnf/modules.d/postgresql.module"
        assert arg(states, sid, "require_in") == [{"pkg": "base-packages"}]
    else:
        assert not any("dnf-module" in s for s in states)


def test_selinux_sets_only_what_rhel_policy_defines(db):
    _, _, states = db
    text = json.dumps(states)
    assert "etcd_port_t" not in text
    assert arg(states, "base-selinux-haproxy-connect-any", "name") == "haproxy_connect_any"
    assert arg(states, "base-selinux-haproxy-connect-any", "value") is True
    ports = {arg(states, s, "name"): arg(states, s, "sel_type") for s in states if s.startswith("base-selinux-port-")}
    # 8008 (Patroni's API) is http_port_t in the policy already: semanage -a would refuse it
    assert ports == {"tcp/6432": "postgresql_port_t"}


def test_haproxy_checks_and_socket_folder(tmp, app):
    major, os_name, states = app
    cfg = rendered(tmp, "app-01", major, os_name, states, "haproxy-config-file")
    assert "http-check send" not in cfg
    # tcp-check connect/send/expect: HAProxy 1.8 and later
    assert 'tcp-check send "GET /primary HTTP/1.0\\r\\n\\r\\n"' in cfg
    assert 'tcp-check expect rstring "^HTTP/1\\.[01] 200"' in cfg
    assert "stats socket /run/haproxy/admin.sock" in cfg
    assert ("prometheus-exporter" in cfg) == (major == 9), "HAProxy 1.8 (RHEL 8) has no Prometheus exporter"
    dropin = arg(states, "haproxy-limits-dropin", "contents")
    assert "RuntimeDirectory=haproxy" in dropin.splitlines()


def test_debians_haproxy_parses_the_redhat_renders(tmp, app):
    """Only HAProxy 2.6 runs here: it parses both renders; what 1.8 lacks (the Prometheus
    exporter) is left out of RHEL 8's by the test above."""
    major, os_name, states = app
    cfg = rendered(tmp, "app-01", major, os_name, states, "haproxy-config-file")
    res = haproxy_check(cfg, Path(tmp) / f"haproxy-check-{major}")
    assert res.returncode == 0, res.stdout + res.stderr
