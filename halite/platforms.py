"""What differs between the OS families halite lays down: packages, services
and paths, resolved for one host's family and PostgreSQL version.

This is the only place that knows ``/usr/lib/postgresql/15/bin`` from
``/usr/pgsql-15/bin``, or Debian 12 from Debian 13: the per-host view
(:mod:`halite.view`) hands the resolved values to the states, which only print
them, and the lab (:mod:`halite.lab`) builds one image and one mirror per
Debian release it finds here.
"""
from __future__ import annotations

#: Debian releases halite lays down: the major version (the ``osmajorrelease``
#: grain), the one PostgreSQL major the release ships (no PGDG repository is
#: reachable from the lab: bookworm has 15 only, trixie 17 only) and its
#: Python (the wheels of the lab's mirror are built for it).
DEBIAN_RELEASES: dict[str, dict] = {
    "bookworm": {"major": 12, "postgresql": 15, "python": "3.11"},
    "trixie": {"major": 13, "postgresql": 17, "python": "3.13"},
}
#: RedHat family majors (Rocky, Alma, RHEL): PostgreSQL comes from PGDG, which
#: builds every supported major for them.
REDHAT_RELEASES: dict[int, dict] = {
    8: {"major": 8, "postgresql": None, "python": "3.6"},
    9: {"major": 9, "postgresql": None, "python": "3.9"},
}
#: The release a host runs when the topology names none.
DEFAULT_RELEASE = {"Debian": "bookworm", "RedHat": 9}
#: PostgreSQL majors the PGDG repositories build for the RedHat family.
PGDG_VERSIONS = (13, 14, 15, 16, 17, 18)


def release_of(family: str, release: str | int | None) -> str | int:
    """The release a host runs: the topology's, or its family's default."""
    return DEFAULT_RELEASE[family] if release is None else release


def release_facts(family: str, release: str | int | None) -> dict:
    """``{"major", "postgresql", "python"}`` of a release (KeyError if unknown)."""
    table = DEBIAN_RELEASES if family == "Debian" else REDHAT_RELEASES
    return table[release_of(family, release)]


def postgresql_versions(family: str, release: str | int | None) -> tuple[int, ...]:
    """PostgreSQL majors a host of this release can install."""
    pg = release_facts(family, release)["postgresql"]
    return (pg,) if pg else PGDG_VERSIONS


def host_postgresql(family: str, release: str | int | None, roles: list[str], cluster_version: int,
                    legacy_version: int | None = None) -> int:
    """The PostgreSQL major whose packages a host installs.

    A db host runs the cluster's (``postgresql.version``), and so does the
    backup host (its restore drill starts the cluster's backups); the legacy server
    its own (``legacy.version``, else the one its release ships); any other
    host (HAProxy's round-trip gate, the site) the client its release ships.
    """
    if "db" in roles or "backup" in roles:
        return cluster_version
    shipped = release_facts(family, release)["postgresql"]
    if "legacy_db" in roles and legacy_version is not None:
        return legacy_version
    return shipped or cluster_version


#: Paths that are the same on every family.
COMMON_PATHS = {
    "nftables_conf": "/etc/nftables.conf",
    # sshd keeps the first value it reads: halite's drop-in sorts before a
    # distribution's or cloud-init's (50-cloud-init.conf allows passwords)
    "sshd_dropin": "/etc/ssh/sshd_config.d/00-halite.conf",
    "sshd_dropin_old": "/etc/ssh/sshd_config.d/50-halite.conf",
    "sysctl_conf": "/etc/sysctl.d/90-halite.conf",
    "patroni_venv": "/opt/patroni",
    "patroni_conf": "/etc/patroni/patroni.yml",
    "etcd_conf": "/etc/default/etcd",
    "etcd_leader_away": "/usr/local/libexec/halite/etcd-leader-away",
}

#: Per family; "{v}" is the PostgreSQL major version, "{legacy}" the legacy cluster's name.
FAMILIES = {
    "Debian": {
        "pkgs": {
            "base": ["chrony", "nftables", "openssh-server"],
            "etcd": ["etcd-server", "etcd-client"],
            "postgresql": ["postgresql-{v}", "postgresql-client-{v}"],
            "python_venv": ["python3-venv"],
            "pgbouncer": ["pgbouncer"],
            "pgbackrest": ["pgbackrest"],
            "haproxy": ["haproxy"],
            "pg_client": ["postgresql-client-{v}"],
            "node_exporter": ["prometheus-node-exporter"],
            "postgres_exporter": ["prometheus-postgres-exporter"],
            "pgbouncer_exporter": ["prometheus-pgbouncer-exporter"],
            "prometheus": ["prometheus", "prometheus-alertmanager"],
        },
        "services": {
            "chrony": "chrony",
            "sshd": "ssh",
            "postgresql_distro": "postgresql",
            "etcd": "etcd",
            "legacy": "postgresql@{v}-{legacy}",
        },
        "paths": {
            "chrony_conf": "/etc/chrony/chrony.conf",
            "pg_bindir": "/usr/lib/postgresql/{v}/bin",
            "pg_datadir": "/var/lib/postgresql/{v}/halite",
            "pg_home": "/var/lib/postgresql",
            "pg_socket_dir": "/var/run/postgresql",
            "pgbouncer_dir": "/etc/pgbouncer",
            "python3": "/usr/bin/python3",
            "legacy_conf_dir": "/etc/postgresql/{v}/{legacy}",
        },
    },
    "RedHat": {
        "pkgs": {
            "base": ["chrony", "nftables", "openssh-server", "policycoreutils-python-utils"],
            "etcd": ["etcd"],
            "postgresql": ["postgresql{v}-server", "postgresql{v}"],
            "python_venv": ["python3"],
            "pgbouncer": ["pgbouncer"],
            "pgbackrest": ["pgbackrest"],
            "haproxy": ["haproxy"],
            "pg_client": ["postgresql{v}"],
            # EPEL's and PGDG's names (untested: no RHEL host in the lab)
            "node_exporter": ["node_exporter"],
            "postgres_exporter": ["postgres_exporter"],
            "pgbouncer_exporter": ["pgbouncer_exporter"],
            "prometheus": ["prometheus2", "alertmanager"],
        },
        "services": {
            "chrony": "chronyd",
            "sshd": "sshd",
            "postgresql_distro": "postgresql-{v}",
            "etcd": "etcd",
            "legacy": "postgresql@{v}-{legacy}",
        },
        "paths": {
            "chrony_conf": "/etc/chrony.conf",
            "pg_bindir": "/usr/pgsql-{v}/bin",
            "pg_datadir": "/var/lib/pgsql/{v}/halite",
            "pg_home": "/var/lib/pgsql",
            "pg_socket_dir": "/var/run/postgresql",
            "pgbouncer_dir": "/etc/pgbouncer",
            "python3": "/usr/bin/python3",
            "legacy_conf_dir": "/etc/postgresql/{v}/{legacy}",
        },
    },
}

#: ``virtual`` grain values of containers (chrony cannot set the clock there).
CONTAINER_VIRTUAL = ["systemd-nspawn", "container", "LXC", "lxc", "docker", "podman", "openvzve"]


def _fill(value, subst: dict):
    if isinstance(value, str):
        for key, val in subst.items():
            value = value.replace("{" + key + "}", str(val))
        return value
    if isinstance(value, list):
        return [_fill(v, subst) for v in value]
    return {k: _fill(v, subst) for k, v in value.items()}


def resolve(family: str, pg_version: int, legacy_cluster: str = "legacy") -> dict:
    """Packages, services and paths for one host, every placeholder filled.

    :param family: ``Debian`` or ``RedHat``.
    :param pg_version: PostgreSQL major version.
    :returns: ``{"pkgs": ..., "services": ..., "paths": ...}``.
    """
    subst = {"v": pg_version, "legacy": legacy_cluster}
    fam = FAMILIES[family]
    return {"pkgs": _fill(fam["pkgs"], subst), "services": _fill(fam["services"], subst),
            "paths": _fill({**COMMON_PATHS, **fam["paths"]}, subst)}
