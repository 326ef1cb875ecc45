"""What differs between the OS families halite lays down: packages, services
and paths, resolved for one host's family and PostgreSQL version.

This is the only place that knows ``/usr/lib/postgresql/15/bin`` from
``/usr/pgsql-15/bin``: the per-host view (:mod:`halite.view`) hands the
resolved values to the states, which only print them.
"""
from __future__ import annotations

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
            "haproxy": ["haproxy"],
            "pg_client": ["postgresql-client-{v}"],
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
            "haproxy": ["haproxy"],
            "pg_client": ["postgresql{v}"],
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
