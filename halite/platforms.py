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
#: reachable from the lab: bookworm has 15 only, trixie 17 only), its Python
#: (the wheels of the lab's mirror are built for it) and its HAProxy (the
#: configuration's features follow it: :func:`host_facts`).
DEBIAN_RELEASES: dict[str, dict] = {
    "bookworm": {"major": 12, "postgresql": 15, "python": "3.11", "haproxy": "2.6"},
    "trixie": {"major": 13, "postgresql": 17, "python": "3.13", "haproxy": "3.0"},
}
#: RedHat family majors (Rocky, Alma, RHEL): PostgreSQL comes from PGDG, which
#: builds every supported major for them. "python" is the interpreter halite's
#: virtualenvs (Patroni, the site) are built with: AppStream's python3.11 on both
#: (the platform Python, 3.6 on 8 and 3.9 on 9, is too old for Patroni 4 and
#: psycopg 3). "haproxy" is AppStream's HAProxy (1.8 on 8, 2.4 on 9: assumed from
#: the RHEL 8/9 release notes, not checked on a host). "dnf_modules_off": the
#: distribution's dnf module streams that hide PGDG's packages of the same name
#: (RHEL 8 enables a default ``postgresql`` stream; RHEL 9's PostgreSQL is not a
#: default stream, so nothing hides PGDG's there).
REDHAT_RELEASES: dict[int, dict] = {
    8: {"major": 8, "postgresql": None, "python": "3.11", "haproxy": "1.8", "dnf_modules_off": ["postgresql"]},
    9: {"major": 9, "postgresql": None, "python": "3.11", "haproxy": "2.4", "dnf_modules_off": []},
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
    # sshd keeps the first value it reads: halite's drop-in sorts before a
    # distribution's or cloud-init's (50-cloud-init.conf allows passwords)
    "sshd_dropin": "/etc/ssh/sshd_config.d/00-halite.conf",
    "sshd_dropin_old": "/etc/ssh/sshd_config.d/50-halite.conf",
    "sysctl_conf": "/etc/sysctl.d/90-halite.conf",
    "patroni_venv": "/opt/patroni",
    "patroni_conf": "/etc/patroni/patroni.yml",
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
            # Debian's PgBouncer runs as postgres, beside PostgreSQL's socket, pid and logs
            "pgbouncer_socket_dir": "/var/run/postgresql",
            "pgbouncer_pidfile": "/var/run/postgresql/pgbouncer.pid",
            "pgbouncer_logfile": "/var/log/postgresql/pgbouncer.log",
            # it reads postgres's copy of the host key (postgresql.tls)
            "pgbouncer_tls_key": None,
            "python3": "/usr/bin/python3",
            "legacy_conf_dir": "/etc/postgresql/{v}/{legacy}",
            # etcd-server's unit reads its environment here
            "etcd_conf": "/etc/default/etcd",
            # nftables.service loads this file
            "nftables_conf": "/etc/nftables.conf",
        },
        # the users daemons run as (their units' User=)
        "os_users": {"pgbouncer": "postgres"},
        # lines of [Service] in halite's drop-in of each unit, on top of halite's own
        "unit_lines": {"haproxy": []},
    },
    "RedHat": {
        "pkgs": {
            "base": ["chrony", "nftables", "openssh-server", "policycoreutils-python-utils"],
            "etcd": ["etcd"],
            "postgresql": ["postgresql{v}-server", "postgresql{v}"],
            # AppStream's python3.11 (RHEL 8.8+ and 9.2+); its -pip brings the wheel
            # ensurepip installs into a virtualenv (assumed, not checked on a host)
            "python_venv": ["python3.11", "python3.11-pip"],
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
            # PGDG's pgbouncer package (pgdg-rpms, rpm/redhat/main/common/pgbouncer/main, read
            # at 40754e0): its unit runs User=pgbouncer; %post makes /var/log/pgbouncer (0700
            # pgbouncer), tmpfiles.d makes /run/pgbouncer (0700 pgbouncer), logrotate rotates
            # /var/log/pgbouncer/pgbouncer.log and signals /var/run/pgbouncer/pgbouncer.pid;
            # the socket stays in upstream's default /tmp (/var/run/postgresql is postgres's)
            "pgbouncer_socket_dir": "/tmp",
            "pgbouncer_pidfile": "/var/run/pgbouncer/pgbouncer.pid",
            "pgbouncer_logfile": "/var/log/pgbouncer/pgbouncer.log",
            # pgbouncer cannot read postgres's copy of the host key (0600 postgres, and
            # PostgreSQL refuses a key others can read): it gets its own (pgbouncer.config)
            "pgbouncer_tls_key": "/etc/halite/tls/pgbouncer.key",
            # Patroni's and the site's virtualenvs (python_venv above)
            "python3": "/usr/bin/python3.11",
            "legacy_conf_dir": "/etc/postgresql/{v}/{legacy}",
            # PGDG's etcd (extras repository; pgdg-rpms rpm/redhat/main/extras/etcd/main,
            # etcd 3.6): its unit has EnvironmentFile=-/etc/etcd/etcd.conf, KEY=value lines
            # as Debian's /etc/default/etcd
            "etcd_conf": "/etc/etcd/etcd.conf",
            # RHEL's nftables.service: ExecStart=/sbin/nft -f /etc/sysconfig/nftables.conf
            # (assumed from RHEL 8/9's package, not checked on a host)
            "nftables_conf": "/etc/sysconfig/nftables.conf",
        },
        "os_users": {"pgbouncer": "pgbouncer"},
        "unit_lines": {
            # RHEL's HAProxy keeps its socket in /var/lib/haproxy: /run/haproxy (the admin
            # socket's folder in haproxy.cfg) is made by systemd at each start
            "haproxy": ["RuntimeDirectory=haproxy"],
        },
    },
}

#: SELinux on the RedHat family: what halite sets, and only types and booleans that
#: RHEL 8/9's selinux-policy-targeted defines. Source: fedora-selinux/selinux-policy,
#: branch c9s (RHEL 9) and f28 (what RHEL 8 forked from), policy/modules/kernel/
#: corenetwork.te.in and policy/modules/contrib/rhcs.te, read at fd1d996:
#: ``network_port(http, ... tcp,8008 ...)``, ``network_port(postgresql, tcp,5432, tcp,9898)``,
#: ``gen_tunable(haproxy_connect_any, false)`` (HAProxy may then bind and connect to any
#: port: its stats port, the poolers, the members' APIs). No policy defines an etcd port
#: type (etcd_port_t): etcd, PgBouncer (no pgbouncer module either) and Patroni run as
#: unconfined_service_t from units under /usr/lib/systemd, so no port label gates them.
SELINUX_BOOLEANS = {"haproxy_connect_any": True}
#: Ports the policy labels already, per type: ``semanage port -a`` refuses them ("already
#: defined"), so halite labels only the others.
SELINUX_POLICY_PORTS = {"http_port_t": (80, 81, 443, 488, 8008, 8009, 8443, 9000),
                        "postgresql_port_t": (5432, 9898)}
#: Which of halite's ports carry which type: the poolers speak PostgreSQL's protocol,
#: Patroni's API HTTP (settings key, type). HAProxy's own ports need none (the boolean).
SELINUX_PORTS = (("pgbouncer.port", "postgresql_port_t"), ("patroni.restapi.port", "http_port_t"))


#: ``virtual`` grain values of containers (chrony cannot set the clock there).
CONTAINER_VIRTUAL = ["systemd-nspawn", "container", "LXC", "lxc", "docker", "podman", "openvzve"]


def _fill(value, subst: dict):
    if value is None:
        return None
    if isinstance(value, str):
        for key, val in subst.items():
            value = value.replace("{" + key + "}", str(val))
        return value
    if isinstance(value, list):
        return [_fill(v, subst) for v in value]
    return {k: _fill(v, subst) for k, v in value.items()}


def resolve(family: str, pg_version: int, legacy_cluster: str = "legacy") -> dict:
    """Packages, services, paths, the users daemons run as and the lines of halite's unit
    drop-ins for one host, every placeholder filled.

    :param family: ``Debian`` or ``RedHat``.
    :param pg_version: PostgreSQL major version.
    :returns: ``{"pkgs", "services", "paths", "os_users", "unit_lines"}``.
    """
    subst = {"v": pg_version, "legacy": legacy_cluster}
    fam = FAMILIES[family]
    return {"pkgs": _fill(fam["pkgs"], subst), "services": _fill(fam["services"], subst),
            "paths": _fill({**COMMON_PATHS, **fam["paths"]}, subst),
            "os_users": dict(fam["os_users"]), "unit_lines": _fill(fam["unit_lines"], subst)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _setting(settings: dict, key: str):
    for part in key.split("."):
        settings = settings[part]
    return settings


def selinux_ports(settings: dict) -> list[dict]:
    """The port labels halite adds (``semanage port -a``): each of :data:`SELINUX_PORTS`
    whose port the policy does not label with that type already.

    :param settings: the checked settings (``pgbouncer.port``, ``patroni.restapi.port``).
    :returns: ``[{"type", "port", "setting"}]``, in :data:`SELINUX_PORTS`' order.
    """
    out = []
    for key, sel_type in SELINUX_PORTS:
        port = _setting(settings, key)
        if port not in SELINUX_POLICY_PORTS.get(sel_type, ()):
            out.append({"type": sel_type, "port": port, "setting": key})
    return out


def host_facts(family: str, release: str | int | None, settings: dict) -> dict:
    """What a host's release means for its states, beyond paths and packages.

    :param family: ``Debian`` or ``RedHat``.
    :param release: the topology's ``os_release`` (None: the family's default).
    :param settings: the checked settings (for the SELinux port labels).
    :returns: ``haproxy_version``; ``haproxy_prometheus`` (HAProxy serves /metrics
        itself: 2.0 and later, which Debian's and RHEL 9's packages build it into -
        RHEL 9's assumed from Fedora's spec, USE_PROMEX); ``dnf_modules_off`` (module
        streams to disable before PGDG's packages install); ``selinux`` (None off the
        RedHat family, else ``{"booleans": {name: value}, "ports": selinux_ports()}``).
    """
    facts = release_facts(family, release)
    haproxy = facts["haproxy"]
    return {
        "haproxy_version": haproxy,
        "haproxy_prometheus": _version(haproxy) >= (2, 0),
        "dnf_modules_off": list(facts.get("dnf_modules_off", [])),
        "selinux": {"booleans": dict(SELINUX_BOOLEANS), "ports": selinux_ports(settings)}
        if family == "RedHat" else None,
    }
