"""What differs between platforms (halite/platforms.py): Debian releases and
the PostgreSQL each ships, the PostgreSQL a host installs for its roles."""
import pytest

from halite import platforms


def test_a_host_without_a_release_runs_its_familys_default():
    assert platforms.release_of("Debian", None) == "bookworm"
    assert platforms.release_of("RedHat", None) == 9
    assert platforms.release_of("Debian", "trixie") == "trixie"


@pytest.mark.parametrize("family, release, major, versions", [
    ("Debian", "bookworm", 12, (15,)),
    ("Debian", "trixie", 13, (17,)),
    ("RedHat", 9, 9, platforms.PGDG_VERSIONS),
    ("RedHat", None, 9, platforms.PGDG_VERSIONS),
])
def test_each_release_ships_its_postgresql(family, release, major, versions):
    assert platforms.release_facts(family, release)["major"] == major
    assert platforms.postgresql_versions(family, release) == versions


def test_trixie_hosts_load_python_313_wheels():
    assert platforms.DEBIAN_RELEASES["trixie"]["python"] == "3.13"
    assert platforms.DEBIAN_RELEASES["bookworm"]["python"] == "3.11"


@pytest.mark.parametrize("release, roles, legacy, expected", [
    ("trixie", ["db"], None, 17),               # the cluster's version
    ("bookworm", ["legacy_db", "app"], None, 15),  # the legacy server: its release's
    ("bookworm", ["legacy_db"], 15, 15),        # or legacy.version
    ("bookworm", ["app", "haproxy"], None, 15),  # a client host: the client its release ships
    ("trixie", ["jump"], None, 17),
])
def test_the_postgresql_a_host_installs(release, roles, legacy, expected):
    assert platforms.host_postgresql("Debian", release, roles, 17, legacy) == expected


def test_a_redhat_client_host_takes_the_clusters_version():
    assert platforms.host_postgresql("RedHat", 9, ["haproxy"], 16) == 16


def test_trixie_paths_for_postgresql_17():
    p = platforms.resolve("Debian", 17)
    assert p["pkgs"]["postgresql"] == ["postgresql-17", "postgresql-client-17"]
    assert p["paths"]["pg_bindir"] == "/usr/lib/postgresql/17/bin"
    assert p["services"]["legacy"] == "postgresql@17-legacy"
    # checked on trixie's .debs: the same package and unit names as bookworm's
    assert p["pkgs"]["etcd"] == ["etcd-server", "etcd-client"]
    assert p["services"]["etcd"] == "etcd" and p["services"]["sshd"] == "ssh"


@pytest.mark.parametrize("family, etcd_conf, nftables_conf", [
    ("Debian", "/etc/default/etcd", "/etc/nftables.conf"),
    # PGDG's etcd unit: EnvironmentFile=-/etc/etcd/etcd.conf; RHEL's nftables unit loads /etc/sysconfig
    ("RedHat", "/etc/etcd/etcd.conf", "/etc/sysconfig/nftables.conf"),
])
def test_etcd_and_nftables_files_per_family(family, etcd_conf, nftables_conf):
    paths = platforms.resolve(family, 17)["paths"]
    assert (paths["etcd_conf"], paths["nftables_conf"]) == (etcd_conf, nftables_conf)


def test_pgbouncer_runs_as_its_packages_user_with_its_folders():
    deb, rh = platforms.resolve("Debian", 15), platforms.resolve("RedHat", 17)
    assert deb["os_users"] == {"pgbouncer": "postgres"} and rh["os_users"] == {"pgbouncer": "pgbouncer"}
    assert deb["paths"]["pgbouncer_logfile"] == "/var/log/postgresql/pgbouncer.log"
    assert rh["paths"]["pgbouncer_logfile"] == "/var/log/pgbouncer/pgbouncer.log"
    assert rh["paths"]["pgbouncer_pidfile"] == "/var/run/pgbouncer/pgbouncer.pid"
    assert rh["paths"]["pgbouncer_socket_dir"] == "/tmp"
    # Debian's reads postgres's copy of the key; PGDG's pgbouncer user gets its own
    assert deb["paths"]["pgbouncer_tls_key"] is None
    assert rh["paths"]["pgbouncer_tls_key"] == "/etc/halite/tls/pgbouncer.key"


def test_redhat_virtualenvs_use_python_311():
    rh = platforms.resolve("RedHat", 17)
    assert rh["paths"]["python3"] == "/usr/bin/python3.11"
    assert rh["pkgs"]["python_venv"][0] == "python3.11"
    assert platforms.resolve("Debian", 15)["paths"]["python3"] == "/usr/bin/python3"


def test_haproxy_drop_in_makes_the_socket_folder_on_redhat_only():
    assert platforms.resolve("RedHat", 17)["unit_lines"]["haproxy"] == ["RuntimeDirectory=haproxy"]
    assert platforms.resolve("Debian", 15)["unit_lines"]["haproxy"] == []


SETTINGS = {"pgbouncer": {"port": 6432}, "patroni": {"restapi": {"port": 8008}}}


@pytest.mark.parametrize("family, release, haproxy, prometheus, modules", [
    ("Debian", "bookworm", "2.6", True, []),
    ("Debian", "trixie", "3.0", True, []),
    ("RedHat", 8, "1.8", False, ["postgresql"]),
    ("RedHat", 9, "2.4", True, []),
])
def test_host_facts_per_release(family, release, haproxy, prometheus, modules):
    facts = platforms.host_facts(family, release, SETTINGS)
    assert facts["haproxy_version"] == haproxy and facts["haproxy_prometheus"] is prometheus
    assert facts["dnf_modules_off"] == modules
    assert (facts["selinux"] is None) == (family == "Debian")


def test_selinux_labels_only_ports_the_policy_leaves_unlabelled():
    facts = platforms.host_facts("RedHat", 9, SETTINGS)["selinux"]
    assert facts["booleans"] == {"haproxy_connect_any": True}
    # 8008 is http_port_t in RHEL's policy already; 6432 is no type's
    assert facts["ports"] == [{"type": "postgresql_port_t", "port": 6432, "setting": "pgbouncer.port"}]
    moved = platforms.selinux_ports({"pgbouncer": {"port": 5432}, "patroni": {"restapi": {"port": 8018}}})
    assert moved == [{"type": "http_port_t", "port": 8018, "setting": "patroni.restapi.port"}]
    assert all(t != "etcd_port_t" for _, t in platforms.SELINUX_PORTS)
