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
