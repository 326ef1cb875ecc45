"""halite's configuration as one typed model (pydantic 2).

Every key a user may set is declared here once, with its type, its range or
its allowed values, its default and a one-line description (``pillar.example``
is generated from these). Unknown keys are refused, with the nearest known key
suggested. Rules that join several keys (ports of one host, etcd timing,
Patroni's timing floors, roles named by firewall services, ...) run after the
types are right, in :func:`cross_checks`. :func:`validate` turns every problem
into one line naming the key, the value and what is allowed, and never lets a
traceback through.

Example::

    from halite import model
    cfg = model.validate(raw_dict)          # raises model.ConfigError
"""
from __future__ import annotations

import copy
import difflib
import ipaddress
import hashlib
import math
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from halite import platforms

# --------------------------------------------------------------------------
# errors


class ConfigError(ValueError):
    """A topology or settings that cannot be deployed.

    ``problems`` lists ``(key, message)`` pairs, all found in one pass; ``key``
    and ``problem`` are the first one's (for callers that show one line).
    """

    def __init__(self, key: str | list[tuple[str, str]], problem: str | None = None):
        if isinstance(key, list):
            self.problems = key
        else:
            self.problems = [(key, problem or "")]
        self.key, self.problem = self.problems[0]
        super().__init__("\n".join(f"{k}: {p}" for k, p in self.problems))


# --------------------------------------------------------------------------
# value types

#: Operating-system families the states know how to lay down.
OS_FAMILIES = ("Debian", "RedHat")
#: Roles a host may hold.
ROLES = ("jump", "db", "haproxy", "app", "legacy_db", "backup", "monitoring")
#: PostgreSQL major versions halite knows the paths of.
PG_VERSIONS = (13, 14, 15, 16, 17, 18)
#: Patroni's own lower bounds for its timing settings.
PATRONI_MINIMUMS = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PG_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SIZE = re.compile(r"^[0-9]+(B|kB|MB|GB|TB)?$")
_DURATION = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
_IFACE = re.compile(r"^[A-Za-z0-9_-]{1,15}$")
_LOGIN_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _host_name(v: str) -> str:
    if not _DNS_LABEL.match(v):
        raise ValueError(f"is {v!r}; a host name is a DNS label: lower-case letters, digits and '-', "
                         "1-63 characters, not starting or ending with '-'")
    return v


def _dns_name(v: str) -> str:
    labels = v.rstrip(".").split(".")
    if len(v) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(f"is {v!r}; a DNS name is dot-separated labels of lower-case letters, digits and '-'")
    return v


def _pg_ident(v: str) -> str:
    if not _PG_IDENT.match(v):
        raise ValueError(f"is {v!r}; a PostgreSQL name here is lower-case letters, digits and '_', "
                         "starting with a letter or '_', at most 63 characters")
    return v


def _pg_table(v: str) -> str:
    schema, dot, table = v.partition(".")
    if not dot or not _PG_IDENT.match(schema) or not _PG_IDENT.match(table):
        raise ValueError(f"is {v!r}; a table here is schema.table, each a PostgreSQL name "
                         "(lower-case letters, digits and '_')")
    return v


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"is {v!r}; a name is letters, digits, '_', '.' and '-', starting with a letter or digit")
    return v


def _secret(v: str) -> str:
    if v == "":
        raise ValueError("is empty; a password or key must not be empty")
    bad = sorted({f"U+{ord(c):04X}" for c in v if not c.isprintable()})
    if bad:
        raise ValueError(f"contains control or unprintable characters ({', '.join(bad)}); "
                         "any printable character is allowed")
    return v


def _login_user(v: str) -> str:
    if not _LOGIN_USER.match(v):
        raise ValueError(f"is {v!r}; a login name is lower-case letters, digits, '_' and '-', "
                         "starting with a letter or '_' (at most 32)")
    return v


def _abs_path(v: str) -> str:
    if not v.startswith("/") or any(not c.isprintable() or c.isspace() for c in v):
        raise ValueError(f"is {v!r}; an absolute path without spaces is expected")
    return v


def _size(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"is {_describe(v)}; a size is a number of bytes or a string such as 1MB")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"is {v}; a size cannot be negative")
        return v
    if not _SIZE.match(v):
        raise ValueError(f"is {v!r}; a size is a number with an optional unit B, kB, MB, GB or TB (e.g. 1MB)")
    return v


def _duration(v: str) -> str:
    if not _DURATION.match(v):
        raise ValueError(f"is {v!r}; a duration is a number with a unit us, ms, s, m, h or d (e.g. 500ms)")
    return v


def _iface(v: str) -> str:
    if not _IFACE.match(v):
        raise ValueError(f"is {v!r}; an interface name is 1-15 letters, digits, '_' or '-'")
    return v


def _ipv4_network(v: str) -> str:
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError as exc:
        raise ValueError(f"is {v!r}; not a network in CIDR form ({exc})") from None
    if net.version == 6:
        raise ValueError(f"is {v!r}; IPv6 is not supported yet: halite deploys on IPv4 networks only")
    return str(net)


def _ipv4_address(v: str) -> str:
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"is {v!r}; an IPv4 address such as 10.0.0.1 is expected") from None
    if ip.version == 6:
        raise ValueError(f"is {v!r}; IPv6 is not supported yet: halite deploys on IPv4 addresses only")
    return str(ip)


def _bind(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if ":" in host or "[" in host:
        raise ValueError(f"is {v!r}; IPv6 is not supported yet: ADDRESS:PORT with an IPv4 address is expected "
                         "(e.g. 127.0.0.1:8000)")
    try:
        _ipv4_address(host)
    except ValueError:
        host = ""
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"is {v!r}; ADDRESS:PORT with an IPv4 address and a port 1-65535 is expected "
                         "(e.g. 127.0.0.1:8000)")
    return v


_PIP_VERSION = re.compile(r"^[0-9][0-9A-Za-z.*+!]*$")
_PIP_SOURCE = re.compile(r"^(/|https?://|file:)[A-Za-z0-9/:._~%+@=-]*$")


def _pip_version(v: str) -> str:
    if not _PIP_VERSION.match(v):
        raise ValueError(f"is {v!r}; a version for ==, such as 4.1.* or 4.1.2 (digits, letters, '.', '*', '+', '!')")
    return v


def _pip_source(v: str) -> str:
    if not _PIP_SOURCE.match(v):
        raise ValueError(f"is {v!r}; an absolute path or an http(s)/file URL without spaces, quotes or "
                         "shell characters is expected")
    return v


def _scalar(v: Any) -> Any:
    if isinstance(v, str):
        return _printable(v)
    if not isinstance(v, (bool, int, float)):
        raise ValueError(f"is {_describe(v)}; a single value (string, number or boolean) is expected")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"is {v}; a finite number is expected")
    return v


def _printable(v: str) -> str:
    if any(not c.isprintable() for c in v):
        raise ValueError(f"is {v!r}; control characters are not allowed")
    return v


Port = Annotated[int, Field(ge=1, le=65535)]
PositiveInt = Annotated[int, Field(ge=1)]
HostName = Annotated[str, AfterValidator(_host_name)]
PgIdent = Annotated[str, AfterValidator(_pg_ident)]
PgTable = Annotated[str, AfterValidator(_pg_table)]
Name = Annotated[str, AfterValidator(_name)]
Secret = Annotated[str, AfterValidator(_secret)]
_GENERATED = ("empty: generated on the control machine on first use and kept there "
              "(.halite/<topology>/secrets.yaml, halite.generated)")
AbsPath = Annotated[str, AfterValidator(_abs_path)]
Size = Annotated[Any, AfterValidator(_size)]
Duration = Annotated[str, AfterValidator(_duration)]
Text = Annotated[str, AfterValidator(_printable)]
Role = Literal["jump", "db", "haproxy", "app", "legacy_db", "backup", "monitoring"]
SourceRole = Literal["jump", "db", "haproxy", "app", "legacy_db", "backup", "monitoring", "control"]
Scalar = Annotated[Any, AfterValidator(_scalar)]


class Model(BaseModel):
    """Strict (no "5000" for 5000), closed (no unknown keys), defaults checked."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, populate_by_name=True)


# --------------------------------------------------------------------------
# topology


class Network(Model):
    cidr: Annotated[str, AfterValidator(_ipv4_network)] = Field(description="the network in CIDR form (IPv4)")
    bridge: Annotated[str, AfterValidator(_iface)] | None = Field(
        None, description="lab only: the bridge the lab creates for this network")
    control_address: Annotated[str, AfterValidator(_ipv4_address)] | None = Field(
        None, description="the control machine's address on this network, if it has one")


class Host(Model):
    roles: list[Role] = Field(min_length=1, description="what the host runs: jump, db, haproxy, app, legacy_db, backup, monitoring")
    user: Annotated[str, AfterValidator(_login_user)] | None = Field(
        None, description="the user halite logs in as on this host (empty: topology.access.user)")
    os_family: Literal["Debian", "RedHat"] = Field("Debian", description="Debian or RedHat")
    os_release: Literal["bookworm", "trixie", 8, 9] | None = Field(
        None, description="Debian: bookworm (12) or trixie (13); RedHat family: major 8 or 9; "
                          "empty: bookworm, or 9")
    addresses: dict[Name, Annotated[str, AfterValidator(_ipv4_address)]] = Field(
        description="network name -> address; every host needs at least one")


class Access(Model):
    """How the control machine logs in: the one place the roster, salt-ssh, salt-run and
    ``halite hosts trust`` take the user, the key and the known_hosts file from."""
    user: Annotated[str, AfterValidator(_login_user)] = Field(
        "root", description="the user halite logs in as (cloud images: admin, debian, almalinux, ec2-user...); "
                            "any other user than root needs passwordless sudo, and salt-ssh runs through it")
    key: AbsPath | None = Field(
        None, description="the SSH private key (empty: the lab's on the lab, ~/.ssh/id_ed25519 elsewhere)")
    known_hosts: AbsPath | None = Field(
        None, description="the host keys halite trusts (empty: the lab's on the lab, "
                          ".halite/<topology>/known_hosts elsewhere, written by `halite hosts trust`)")


class Topology(Model):
    name: Name = Field(description="the site's name (lab for the lab)")
    access: Access = Field(default_factory=Access, description="how the control machine logs in to the hosts")
    domain: Annotated[str, AfterValidator(_dns_name)] = Field(description="DNS domain of the hosts")
    networks: dict[Name, Network] = Field(description="networks by name; 'private' is the cluster's own")
    lab_range: Annotated[str, AfterValidator(_ipv4_network)] | None = Field(
        None, description="lab only: the range the lab keeps on this machine (unreachable route)")
    hosts: dict[HostName, Host] = Field(min_length=1, description="hosts by name")


# --------------------------------------------------------------------------
# settings


class YumRepo(Model):
    """One dnf repository of the RedHat family (PGDG's, EPEL's, an organisation's mirror)."""

    baseurl: Text = Field(description="the repository's baseurl")
    gpgkey: Text | None = Field(None, description="the URL or file:// path of the key its packages are signed with")
    gpgcheck: bool = Field(True, description="dnf checks the packages' signatures against gpgkey")

    @model_validator(mode="after")
    def _key_when_checked(self):
        # dnf refuses a repository that checks signatures and names no key
        if self.gpgcheck and not self.gpgkey:
            raise ValueError("gpgcheck is on but no gpgkey is given: name the repository's signing key "
                             "(a URL or a file:// path), or set gpgcheck: false")
        return self


class Packages(Model):
    apt_sources: list[Text] = Field(default_factory=list, description="Debian: lines of /etc/apt/sources.list.d/halite.list")
    apt_keys: dict[Name, AbsPath] = Field(
        default_factory=dict,
        description="Debian: key name -> an armored OpenPGP public key file on the control machine, laid down as "
                    "/etc/apt/keyrings/<name>.asc for the sources' [signed-by=...]")
    yum_repos: dict[Name, YumRepo] = Field(
        default_factory=dict,
        description="RedHat family: repository name -> {baseurl, gpgkey (URL or file:// path), gpgcheck (default true)}")
    pip_find_links: Annotated[str, AfterValidator(_pip_source)] | None = Field(
        None, description="a folder of wheels for Patroni, or null for the index")
    pip_index_url: Annotated[str, AfterValidator(_pip_source)] | None = Field(
        None, description="a PyPI index URL, or null for pip's default")


class Time(Model):
    servers: list[Annotated[str, AfterValidator(_dns_name)]] = Field(
        default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org", "2.debian.pool.ntp.org"],
        description="NTP servers for chrony")


class Service(Model):
    name: Name
    ports: list[Port] = Field(min_length=1)
    to: list[Role] = Field(min_length=1, description="roles whose hosts open the ports")
    from_: list[SourceRole] = Field(alias="from", min_length=1, description="roles (or control) allowed in")
    network: Name | None = Field(
        None, description="open the ports on the host's address on this network only (empty: every address)")


def _default_services() -> list[dict]:
    return [
        {"name": "etcd-client", "ports": [2379], "to": ["db"], "from": ["db", "monitoring"]},
        {"name": "etcd-peer", "ports": [2380], "to": ["db"], "from": ["db"]},
        {"name": "patroni-api", "ports": [8008], "to": ["db"], "from": ["db", "haproxy", "app", "monitoring"]},
        {"name": "postgresql", "ports": [5432], "to": ["db"], "from": ["db", "haproxy", "backup"]},
        {"name": "pgbouncer", "ports": [6432], "to": ["db"], "from": ["db", "haproxy", "app"]},
        {"name": "haproxy", "ports": [5000, 5001], "to": ["haproxy"], "from": ["app", "control"]},
        # the stats page listens on the private address only: reach it through the jump host
        # (ssh -L 7000:<haproxy host>:7000 root@<jump host>)
        {"name": "haproxy-stats", "ports": [7000], "to": ["haproxy"], "from": ["jump", "monitoring"],
         "network": "private"},
        {"name": "web-http", "ports": [80], "to": ["app"], "from": ["control"]},
        {"name": "legacy-postgresql", "ports": [5433], "to": ["legacy_db"], "from": ["db"]},
        # pgBackRest's TLS server: db hosts push WAL to the repository, the backup
        # host reaches each member's PostgreSQL through the member's server
        {"name": "pgbackrest", "ports": [8432], "to": ["db", "backup"], "from": ["db", "backup"]},
        # monitoring: only the Prometheus host scrapes the exporters (monitoring.ports), on the
        # private network where they listen; the control machine reaches Prometheus (and the
        # dashboard) on the edge network
        {"name": "node-exporter", "ports": [9100], "from": ["monitoring"], "network": "private",
         "to": ["jump", "db", "haproxy", "app", "legacy_db", "backup", "monitoring"]},
        {"name": "postgres-exporter", "ports": [9187], "to": ["db"], "from": ["monitoring"]},
        {"name": "pgbouncer-exporter", "ports": [9127], "to": ["db"], "from": ["monitoring"]},
        {"name": "prometheus", "ports": [9090], "to": ["monitoring"], "from": ["control"]},
        {"name": "dashboard", "ports": [3000], "to": ["monitoring"], "from": ["control"]},
    ]


class Firewall(Model):
    services: list[Service] = Field(
        default_factory=lambda: [Service.model_validate(s) for s in _default_services()], min_length=1,
        description="who may reach which port (one table: nftables and pg_hba both follow it); "
                    "SSH is derived: the jump host from control, every other host from the jump host")


def _default_sysctl() -> dict:
    return {"db": {
        "vm.swappiness": 1, "vm.dirty_background_ratio": 5, "vm.dirty_ratio": 20,
        # a storm of new clients waits in the kernel's queues until PgBouncer accepts it
        "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096,
        "net.ipv4.tcp_keepalive_time": 60, "net.ipv4.tcp_keepalive_intvl": 10,
        "net.ipv4.tcp_keepalive_probes": 6,
        # PgBouncer and PostgreSQL may start before the host's address exists
        # (seen in the lab after a power cycle); without this they listen on
        # 127.0.0.1 only while Patroni says "primary".
        "net.ipv4.ip_nonlocal_bind": 1,
    }, "haproxy": {
        # the same for HAProxy's listeners (their backlog is haproxy.maxconn, capped by somaxconn)
        "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096,
    }}


def _sysctl_key(v: str) -> str:
    if not re.match(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$", v):
        raise ValueError(f"is {v!r}; not a sysctl key (e.g. vm.swappiness)")
    return v


SysctlKey = Annotated[str, AfterValidator(_sysctl_key)]


def _retention(v: str) -> str:
    if not re.match(r"^([0-9]+|[0-9]+(ms|s|m|h))$", v):
        raise ValueError(f"is {v!r}; a duration such as 30m or 1h, or a whole number of revisions")
    return v


class Etcd(Model):
    client_port: Port = Field(2379, description="etcd's client port")
    peer_port: Port = Field(2380, description="etcd's peer port")
    data_dir: AbsPath = Field("/var/lib/etcd/halite", description="etcd's data directory")
    heartbeat_interval: Annotated[int, Field(ge=10, le=10000)] = Field(100, description="ms")
    election_timeout: Annotated[int, Field(ge=50, le=50000)] = Field(1000, description="ms; at least 5 x heartbeat")
    keep_leader_off_primary: bool = Field(
        True, description="hand etcd's leadership away from the PostgreSQL primary's host")
    # Patroni writes to etcd on every HA loop: without compaction the history
    # grows until the quota, after which etcd refuses writes (no leader race won).
    auto_compaction_mode: Literal["periodic", "revision"] = Field(
        "periodic", description="etcd's history compaction: periodic (by age) or revision (by count)")
    auto_compaction_retention: Annotated[str, AfterValidator(_retention)] = Field(
        "1h", description="history kept: a duration (periodic, e.g. 1h) or a revision count (revision, e.g. 10000)")
    quota_backend_bytes: Annotated[int, Field(ge=16 * 2**20, le=8 * 2**30)] = Field(
        2 * 2**30, description="etcd's backend size limit in bytes (16 MiB - 8 GiB; etcd's default 2 GiB)")


def _default_pg_parameters() -> dict:
    return {"max_connections": 200, "shared_buffers": "128MB", "wal_level": "logical", "wal_log_hints": "on",
            "max_wal_senders": 10, "max_replication_slots": 10, "hot_standby": "on", "wal_keep_size": "256MB",
            "password_encryption": "scram-sha-256"}


def _pg_param(v: str) -> str:
    if not re.match(r"^[a-z_][a-z0-9_.]*$", v):
        raise ValueError(f"is {v!r}; a PostgreSQL parameter name is lower-case letters, digits, '_' and '.' "
                         "(e.g. work_mem)")
    return v


PgParam = Annotated[str, AfterValidator(_pg_param)]


class PostgreSQL(Model):
    version: Literal[13, 14, 15, 16, 17, 18] = Field(15, description="PostgreSQL major version")
    port: Port = Field(5432, description="PostgreSQL's port on the db hosts")
    parameters: dict[PgParam, Scalar] = Field(default_factory=_default_pg_parameters,
                                              description="postgresql.conf parameters (through Patroni's DCS)")


class Timing(Model):
    ttl: int | None = None
    loop_wait: int | None = None
    retry_timeout: int | None = None
    primary_start_timeout: Annotated[int, Field(ge=0)] | None = None


class DcsPostgreSQL(Model):
    use_pg_rewind: bool = True
    use_slots: bool = True


class Dcs(Timing):
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = Field(1048576, description="bytes")
    synchronous_mode: bool = True
    synchronous_mode_strict: bool = False
    failsafe_mode: bool = True
    postgresql: DcsPostgreSQL = Field(default_factory=DcsPostgreSQL)


def _plain_secret(v: str) -> str:
    _secret(v)
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", v):
        raise ValueError("must be at least 16 letters, digits, '-' or '_' (pgBackRest's configuration file "
                         "has no quoting)")
    return v


def _ascii_secret(v: str) -> str:
    _secret(v)
    if not v.isascii():
        bad = sorted({c for c in v if not c.isascii()})
        raise ValueError(f"contains {', '.join(repr(c) for c in bad)}; Patroni's REST API password must be printable "
                         "ASCII (Patroni's own client encodes Basic authentication as latin-1 and crashes on "
                         "other characters at start, seen in the lab with '\u2603')")
    return v


class RestApi(Model):
    port: Port = Field(8008, description="Patroni's REST API port")
    username: Name = Field("patroni", description="user for the REST API's unsafe endpoints")
    password: Annotated[str, AfterValidator(_ascii_secret)] | None = Field(
        None, description="its password (secret; printable ASCII); " + _GENERATED)


def _default_profiles() -> dict:
    return {
        "patroni-defaults": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "primary_start_timeout": 300},
        "halite": {"ttl": 20, "loop_wait": 3, "retry_timeout": 5, "primary_start_timeout": 0},
        # only for `make bench-loop-wait`
        "halite-loop-wait-2": {"ttl": 20, "loop_wait": 2, "retry_timeout": 5, "primary_start_timeout": 0},
        "halite-loop-wait-4": {"ttl": 20, "loop_wait": 4, "retry_timeout": 5, "primary_start_timeout": 0},
    }


def _namespace(v: str) -> str:
    if not re.match(r"^/([A-Za-z0-9_.-]+/)*$", v):
        raise ValueError(f"is {v!r}; a DCS namespace looks like /service/")
    return v


class Patroni(Model):
    version: Annotated[str, AfterValidator(_pip_version)] = Field(
        "4.1.*", description="Patroni version from PyPI (pip specifier)")
    scope: Name = Field("halite", description="the cluster's name in the DCS")
    namespace: Annotated[str, AfterValidator(_namespace)] = Field(
        "/service/", description="the DCS key prefix")
    restapi: RestApi = Field(default_factory=RestApi)
    profile: Name = Field("halite", description="timing profile merged under dcs (README: timing profiles)")
    profiles: dict[Name, Timing] = Field(default_factory=_default_profiles, description="named timing profiles")
    dcs: Dcs = Field(default_factory=Dcs, description="dynamic configuration, merged over the profile")


class PgBouncer(Model):
    port: Port = Field(6432, description="PgBouncer's port on the db hosts")
    pool_mode: Literal["session", "transaction", "statement"] = Field("transaction")
    default_pool_size: Annotated[int, Field(ge=1, le=10000)] = Field(20)
    max_client_conn: Annotated[int, Field(ge=1, le=1000000)] = Field(
        10000, description="clients one PgBouncer holds at once; beyond default_pool_size they wait in "
                           "its queue for a server connection (query_wait_timeout), they are not refused. "
                           "Its open-file limit follows (halite.view.pgbouncer_nofile)")
    listen_backlog: Annotated[int, Field(ge=16, le=65535)] = Field(
        4096, description="connections the kernel queues for PgBouncer before it accepts them (a storm "
                          "of new clients); the db hosts' net.core.somaxconn caps it")
    databases: list[PgIdent] = Field(default_factory=lambda: ["carsale", "postgres"],
                                     description="databases PgBouncer serves", min_length=1)


class Check(Model):
    inter: Duration = "1s"
    fastinter: Duration = "500ms"
    downinter: Duration = "500ms"
    fall: PositiveInt = 2
    rise: PositiveInt = 1


class Timeouts(Model):
    connect: Duration = "2s"
    queue: Duration = Field("30s", description="how long a client waits in HAProxy's queue for a "
                                               "server slot (haproxy.maxconn above the poolers' share)")
    client: Duration = "30m"
    server: Duration = "30m"
    check: Duration = "1s"


class HAProxy(Model):
    write_port: Port = Field(5000, description="writes: to the primary")
    read_port: Port = Field(5001, description="reads: to the replicas")
    stats_port: Port = Field(7000, description="HAProxy's stats page, on each HAProxy host's cluster address only")
    stats_user: PgIdent = Field("halite", description="the stats page's login (HTTP basic auth)")
    stats_password: Secret | None = Field(
        None, description="the stats page's password (secret); empty: generated on the control machine on "
                          "first use and kept there (halite.generated)")
    replica_max_lag: Size = Field("1MB", description="a replica further behind takes no reads")
    maxconn: Annotated[int, Field(ge=1, le=1000000)] = Field(
        10000, description="clients each of the write and read ports holds at once; each pooler takes "
                           "pgbouncer.max_client_conn / (HAProxy hosts) of them, the rest wait in "
                           "HAProxy's queue (timeout.queue). HAProxy's global maxconn is this plus 100 "
                           "(stats, checks), its open-file limit twice that plus 1024")
    check: Check = Field(default_factory=Check, description="health check timing (default-server)")
    timeout: Timeouts = Field(default_factory=Timeouts)


class Seed(Model):
    cars: Annotated[int, Field(ge=0, le=10_000_000)] = 3000
    seed: int = 42


class RateLimit(Model):
    """nginx's ``limit_req`` per client address: a leaky bucket of ``burst`` requests
    drained at ``per_second``; a request beyond it gets 429 at once.

    The defaults leave room for halite's own load, all from one address (the control
    machine): tests/lab/test_30_site.py browses with 2-3 clients (2 requests, then 0.1 s
    asleep: at most ~40 requests/s each) while 4 buyers send 80 requests each without
    pausing (320 at once at worst): below 300/s sustained with 600 in one burst. The
    benchmark (``make bench-web``, halite.webbench_lab) loads gunicorn on the app host's
    loopback, not through nginx, so it is never limited."""

    per_second: Annotated[int, Field(ge=1, le=100000)] = Field(
        300, description="requests per second one client address may send, sustained")
    burst: Annotated[int, Field(ge=0, le=100000)] = Field(
        600, description="requests above the rate one client address may send at once")


class Web(Model):
    database_target: Literal["legacy", "cluster"] | None = Field(
        None, description="legacy, cluster, or null: keep what the host last used (target_file)")
    target_file: AbsPath = Field("/etc/carsale/target", description="where the host remembers its target")
    user: PgIdent = Field("carsale", description="the site's system user")
    home: AbsPath = Field("/opt/carsale", description="code in <home>/app, virtualenv in <home>/venv")
    config_dir: AbsPath = Field("/etc/carsale", description="site.env (0640) and gunicorn.conf.py")
    bind: Annotated[str, AfterValidator(_bind)] = Field("127.0.0.1:8000", description="gunicorn; only nginx talks to it")
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    threads: Annotated[int, Field(ge=1, le=64)] = 4
    listen_network: Name = Field("edge", description="nginx publishes the site on the host's address on this network")
    http_port: Port = Field(80, description="plain HTTP: with TLS on the site (tls), a redirect to https only")
    https_port: Port = Field(443, description="HTTPS, with the host's certificate from halite's CA "
                                              "(unless tls.unsafe_plaintext names site)")
    rate_limit: RateLimit = Field(default_factory=lambda: RateLimit(),
                                  description="nginx's request limit per client address")
    seed: Seed = Field(default_factory=Seed, description="demo data generated on the legacy server")
    secret_key: Secret | None = Field(None, description="signs sessions and forms (secret); " + _GENERATED)


def _default_legacy_parameters() -> dict:
    return {"wal_level": "logical", "max_wal_senders": 10, "max_replication_slots": 10, "max_connections": 100,
            "password_encryption": "scram-sha-256"}


class Legacy(Model):
    version: Literal[13, 14, 15, 16, 17, 18] | None = Field(
        None, description="the legacy server's PostgreSQL major; empty: the one its host's release ships")
    cluster: Name = Field("legacy", description="pg_createcluster's cluster name")
    port: Port = Field(5433, description="the legacy server's port on its host")
    parameters: dict[PgParam, Scalar] = Field(default_factory=_default_legacy_parameters)


class Move(Model):
    publication: PgIdent = "halite_move"
    subscription: PgIdent = "halite_move"
    sync_timeout: Annotated[int, Field(ge=1)] = Field(1800, description="seconds for the initial copy")
    catchup_timeout: Annotated[int, Field(ge=1)] = Field(120, description="seconds, writes frozen, to catch up")
    check_timeout: Annotated[int, Field(ge=1)] = Field(120, description="seconds for the site to answer from the cluster")
    report_downtime: bool = Field(False, description="orch.migrate turns it on")
    overwrite_target: bool = Field(
        False, description="let the move empty cluster tables that hold rows (off: such a cluster is refused, "
                           "its tables and row counts named, nothing changed)")
    expendable_tables: list[PgTable] = Field(
        default_factory=lambda: ["public.schema_migrations"],
        description="schema.table emptied on the cluster without asking: what the cluster's schema step fills "
                    "(the site's list of applied migrations) and the copy brings over again")


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {**{d: i for i, d in enumerate(_WEEKDAYS)},
                  **{d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                                 "saturday", "sunday"))}}
_CALENDAR_SHORTHANDS = ("minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly",
                        "semiannually")
_CALENDAR_ITEM = re.compile(r"^([0-9]+)(?:\.\.([0-9]+))?(?:/([0-9]+))?$")
_CALENDAR_DATE = re.compile(r"^(?:([^-~:]+)-)?([^-~:]+)([-~])([^-~:]+)$")


def _calendar_field(text: str, low: int, high: int) -> bool:
    """One field of a systemd calendar event: ``*``, or a list of ``N``, ``N..M``, ``N/STEP``."""
    for item in text.split(","):
        if item == "*":
            continue
        m = _CALENDAR_ITEM.match(item)
        if not m or not low <= int(m.group(1)) <= high:
            return False
        if m.group(2) is not None and not int(m.group(1)) <= int(m.group(2)) <= high:
            return False
        if m.group(3) is not None and int(m.group(3)) == 0:
            return False
    return bool(text)


def _calendar_weekdays(text: str) -> bool:
    for item in text.lower().split(","):
        first, sep, last = item.partition("..")
        if first not in _WEEKDAY_NAMES or (sep and (last not in _WEEKDAY_NAMES
                                                    or _WEEKDAY_NAMES[last] < _WEEKDAY_NAMES[first])):
            return False
    return True


def _calendar_time(text: str) -> bool:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return False
    seconds = parts[2] if len(parts) == 3 else "0"
    seconds = re.sub(r"\.[0-9]+$", "", seconds) if re.match(r"^[0-9]+\.[0-9]+$", seconds) else seconds
    return (_calendar_field(parts[0], 0, 23) and _calendar_field(parts[1], 0, 59)
            and _calendar_field(seconds, 0, 59))


def _timezone(text: str) -> bool:
    if text == "UTC":
        return True
    try:
        import zoneinfo
        return text in zoneinfo.available_timezones()
    except ImportError:  # Python 3.8
        return bool(re.match(r"^[A-Z][A-Za-z_+-]*(/[A-Za-z0-9_+-]+)+$", text))


def _on_calendar(v: str) -> str:
    """A systemd calendar event (systemd.time(7), ``OnCalendar=``), checked as systemd-analyze calendar would.

    ``[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]`` or a
    shorthand such as ``daily``; fields take ``*``, lists, ``..`` ranges and
    ``/`` steps; ``~`` counts days from the month's end.
    """
    words = v.split(" ")
    ok = bool(v.strip()) and "" not in words
    if ok and not (len(words) == 1 and words[0].lower() in _CALENDAR_SHORTHANDS):
        if words and ":" not in words[-1] and "-" not in words[-1] and "~" not in words[-1] \
                and not _calendar_weekdays(words[-1]) and len(words) > 1:
            ok = ok and _timezone(words.pop())
        if ok and words and _calendar_weekdays(words[0]):
            words.pop(0)
        if ok and words and ":" in words[-1]:
            ok = _calendar_time(words.pop())
        if ok and words:
            m = _CALENDAR_DATE.match(words.pop(0))
            ok = bool(m) and (m.group(1) is None or _calendar_field(m.group(1), 1970, 2199)) \
                and _calendar_field(m.group(2), 1, 12) and _calendar_field(m.group(4), 1, 31)
        ok = ok and not words
    if not ok:
        raise ValueError(f"is {v!r}; a systemd OnCalendar expression is expected, such as 'Sun *-*-* 01:00:00', "
                         "'Mon..Sat 01:00' or 'daily' (check it with systemd-analyze calendar)")
    return v


OnCalendar = Annotated[str, AfterValidator(_on_calendar)]


class Backup(Model):
    """pgBackRest: the repository on the host with the role ``backup``, WAL archived by whichever
    member is primary, scheduled backups taken from a standby. With no backup host in the
    topology nothing of this is laid down (no archiving, no backups)."""

    stanza: Name = Field("halite", description="pgBackRest's name for the cluster's backups (the stanza)")
    repo_path: AbsPath = Field("/var/lib/pgbackrest", description="the repository on the backup host (repo1-path)")
    cipher_type: Literal["aes-256-cbc", "none"] = Field(
        "aes-256-cbc", description="repository encryption (repo1-cipher-type); the passphrase is a secret")
    cipher_pass: Annotated[str, AfterValidator(_plain_secret)] | None = Field(
        None, description="the repository's passphrase (repo1-cipher-pass; letters, digits, - and _); " + _GENERATED)
    retention_full: Annotated[int, Field(ge=1, le=9999999)] = Field(
        2, description="full backups kept, with the WAL they need (repo1-retention-full)")
    retention_diff: Annotated[int, Field(ge=1, le=9999999)] = Field(
        7, description="differential backups kept (repo1-retention-diff)")
    schedule_full: OnCalendar = Field(
        "Sun *-*-* 01:00:00", description="when the full backup runs (systemd OnCalendar)")
    schedule_incr: OnCalendar = Field(
        "Mon..Sat *-*-* 01:00:00", description="when the incremental backup runs (systemd OnCalendar)")
    max_age: Annotated[int, Field(ge=60)] = Field(
        26 * 3600, description="seconds; the gate backup_health.fresh fails when the newest backup is older")
    tls_port: Port = Field(8432, description="pgBackRest's TLS server, on the backup host and every db host")
    archive_timeout: Annotated[int, Field(ge=0, le=86400)] = Field(
        60, description="seconds; PostgreSQL switches WAL segments at least this often when there were "
                        "writes, so an idle-ish primary's last writes reach the archive (archive_timeout; 0: off)")
    process_max: Annotated[int, Field(ge=1, le=64)] = Field(
        2, description="pgBackRest's parallel processes for backup, restore and asynchronous archiving")
    compress_type: Literal["lz4", "zst", "gz", "none"] = Field(
        "lz4", description="compression of backups and archived WAL (compress-type)")
    drill_port: Port = Field(5499, description="the restore drill's scratch PostgreSQL, on the backup host, "
                                               "listening on a Unix socket only")


#: The links halite encrypts with certificates from its own CA (halite.pki).
TlsLink = Literal["etcd", "patroni_api", "postgresql", "pgbouncer", "site"]


class Tls(Model):
    """TLS on every link, with certificates from halite's CA (made on the control machine on
    first use, or yours: README, Security)."""

    unsafe_plaintext: list[TlsLink] = Field(
        default_factory=list,
        description="UNSAFE: links left in clear text (etcd, patroni_api, postgresql, pgbouncer, site); "
                    "passwords and data then cross the network readable by anyone on it")
    cert_days: Annotated[int, Field(ge=2, le=825)] = Field(
        397, description="days a newly issued host certificate is valid")
    renew_before_days: Annotated[int, Field(ge=1, le=365)] = Field(
        30, description="a host certificate with fewer days left is renewed by the next apply "
                        "(orch.rotate_certs); the expiry check fails below this")

    @model_validator(mode="after")
    def _renew_inside_validity(self):
        if self.renew_before_days >= self.cert_days:
            raise ValueError(f"renew_before_days ({self.renew_before_days}) must be below cert_days "
                             f"({self.cert_days}), or every apply would issue new certificates")
        if len(set(self.unsafe_plaintext)) != len(self.unsafe_plaintext):
            raise ValueError("unsafe_plaintext names a link twice")
        return self


class User(Model):
    username: PgIdent
    password: Secret | None = Field(None, description=_GENERATED)
    database: PgIdent | None = None


def _user(username: str, **extra):
    return Field(default_factory=lambda: User(username=username, **extra))


class Users(Model):
    """PostgreSQL's roles. Every password is generated per install unless you give one."""

    superuser: User = _user("postgres")
    replication: User = _user("replicator")
    rewind: User = _user("rewind_user")
    pgbouncer_auth: User = _user("pgbouncer_auth")
    app: User = _user("carsale", database="carsale")
    legacy_move: User = _user("legacy_move")
    backup: User = Field(
        default_factory=lambda: User(username="halite_backup"),
        description="the backup host's read-only login on the cluster (restore points for the drill)")
    monitor: User = Field(
        default_factory=lambda: User(username="halite_monitor"),
        description="the exporters' login (member of pg_monitor; PgBouncer's stats_users), db hosts only")

    @model_validator(mode="before")
    @classmethod
    def _default_usernames(cls, data):
        """A user given with its password only keeps its default name (and database)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, given in data.items():
            field = cls.model_fields.get(key)
            if isinstance(given, dict) and field is not None and field.default_factory is not None:
                default = field.default_factory().model_dump()
                out[key] = {k: v for k, v in default.items() if k != "password" and v is not None} | given
        return out

    @field_validator("monitor")
    @classmethod
    def _monitor_untrimmed(cls, v: User) -> User:
        if v.password is not None and v.password != v.password.strip():
            raise ValueError("its password has a space at an end; the postgres exporter trims the password "
                             "file it reads (DATA_SOURCE_PASS_FILE), so the login would fail: remove it")
        if v.password is not None and ("'" in v.password or "\\" in v.password):
            raise ValueError("its password holds a ' or a \\; the postgres exporter (0.11) refuses its own "
                             "connection string then (\"malformed dsn\"), and prints it, password included, "
                             "to its log: choose one without")
        return v

    @field_validator("app")
    @classmethod
    def _app_database(cls, v: User) -> User:
        if v.database is None:
            raise ValueError("needs database: the site's database name")
        return v


class Secrets(Model):
    """How halite generates the secrets you do not give (README, Security)."""

    style: Literal["plain", "nasty"] = Field(
        "plain", description="plain: letters, digits, - and _; nasty (the lab): every generated password "
                             "also holds quotes, $, :, a backslash, spaces, # and non-ASCII, so each deploy "
                             "proves they are escaped right wherever they land")


#: The lab's package mirror and wheel folder, mounted read-only into every lab host.
LAB_MIRROR = "/srv/halite-mirror"
#: Where the lab keeps the key its mirror is signed with (on the control machine).
LAB_KEY_DIR = "/var/lib/halite/mirror-key/"
#: SHA-256 of the passwords and key the lab shipped in git before halite generated them
#: (pillar/secrets.yaml, up to December 2026): a topology that is not the lab refuses them.
LAB_EXAMPLE_SECRETS = frozenset({
    "d487686aa71d88435ccd43c95cfb7ffa75729a49d9dffdf5177c656f296c61de",
    "90dd54275d58c57ae93fe597b913c97c1b3f031db410819edfd82725aac05427",
    "708465d8cbce1b8ad4e4c196f1bc47f8ee73732b1ad518634c4ff15dce3bc1fe",
    "f059c7f8ee4149d0182d745cef29a82e7d89e4d26bf18e679c4e124748e3bb37",
    "29ef1420209d98639a9b76ca1604ed38c2027ebd98cbed43096db8d79b16b945",
    "68eeb43cb6a89b1f64638c9c491ac2eedcbf26b654685f712559aef99116eb19",
    "b153b3d61d46d2bf42b4d5061c5200c1632a3a00543b0a32c4382bc107c31983",
    "aacdd88c116c45df625566b34fa0a90a8fc81c66fed2c9afbcc0f724a8c003cb",
})


# Prometheus's own duration syntax (no "us"): `for:` and ranges print it as is
_PROM_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d)$")


def _prom_duration(v: str) -> str:
    if not _PROM_DURATION.match(v):
        raise ValueError(f"is {v!r}; a Prometheus duration is a number with a unit ms, s, m, h or d (e.g. 2m)")
    return v


PromDuration = Annotated[str, AfterValidator(_prom_duration)]
Percent = Annotated[int, Field(ge=1, le=99)]


class ExporterPorts(Model):
    node_exporter: Port = Field(9100, description="prometheus-node-exporter, every host")
    postgres_exporter: Port = Field(9187, description="prometheus-postgres-exporter, db hosts")
    pgbouncer_exporter: Port = Field(9127, description="prometheus-pgbouncer-exporter, db hosts")
    prometheus: Port = Field(9090, description="Prometheus on the monitoring host (every address)")
    alertmanager: Port = Field(9093, description="Alertmanager on the monitoring host (loopback only)")
    recorder: Port = Field(9095, description="halite's alert recorder on the monitoring host (loopback only)")
    dashboard: Port = Field(3000, description="the dashboard page (nginx) on the monitoring host")


class AlertThresholds(Model):
    replica_lag_bytes: Annotated[int, Field(ge=0)] | None = Field(
        None, description="a replica further behind the leader alerts; empty: patroni.dcs.maximum_lag_on_failover")
    etcd_db_quota_percent: Percent = Field(80, description="etcd's database size, in % of etcd.quota_backend_bytes")
    pgbouncer_waiting_clients: Annotated[int, Field(ge=0)] = Field(
        0, description="more clients than this waiting for a server connection in one pool alerts")
    pgbouncer_client_percent: Percent = Field(80, description="client connections, in % of pgbouncer.max_client_conn")
    disk_used_percent: Percent = Field(85, description="a filesystem of a db host fuller than this alerts")
    clock_offset_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        0.1, description="a host's clock further off than this (chrony, node_timex_offset_seconds) alerts")
    backup_max_age: PromDuration = Field("26h", description="the last successful backup older than this alerts")


class AlertFor(Model):
    """How long a condition holds before its alert fires (Prometheus ``for:``)."""

    leader: PromDuration = Field("1m", description="no leader, more than one leader")
    replication: PromDuration = Field("2m", description="replica not streaming or lagging; no synchronous standby")
    etcd: PromDuration = Field("1m", description="etcd member down, no etcd leader")
    etcd_quota: PromDuration = Field("10m", description="etcd's database near its quota")
    pgbouncer: PromDuration = Field("2m", description="waiting clients, client connections near the limit")
    haproxy: PromDuration = Field("30s", description="no write backend up")
    disk: PromDuration = Field("5m", description="disk nearly full")
    archive: PromDuration = Field("5m", description="WAL archiving failing (also the window failures are counted in)")
    backup: PromDuration = Field("10m", description="last backup too old")
    clock: PromDuration = Field("5m", description="clock offset")
    certificate: PromDuration = Field("15m", description="a certificate of halite's CA close to its end")
    scrape: PromDuration = Field("2m", description="an exporter or service not answering Prometheus")


def _webhook_url(v: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
        raise ValueError(f"is {v!r}; an http:// or https:// URL (Alertmanager's webhook_configs url)")
    return v


class Monitoring(Model):
    """Exporters on every host, Prometheus and Alertmanager on the host with the role
    ``monitoring`` (nothing is laid down when no host has it)."""

    ports: ExporterPorts = Field(default_factory=ExporterPorts, description="exporters' ports")
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds, description="alert thresholds")
    for_: AlertFor = Field(default_factory=AlertFor, alias="for", description="alert durations (Prometheus for:)")
    scrape_interval: PromDuration = Field("15s", description="Prometheus's scrape and rule evaluation interval")
    retention: PromDuration = Field("15d", description="how long Prometheus keeps samples")
    webhook_url: Annotated[str, AfterValidator(_webhook_url)] | None = Field(
        None, description="where Alertmanager sends alerts (a webhook receiver: your pager, chat bridge...); "
                          "empty: halite's recorder on the monitoring host keeps them in "
                          "/var/lib/halite-alerts/alerts.jsonl")


class Settings(Model):
    """Everything under the pillar key ``halite``."""

    topology: Topology
    packages: Packages = Field(default_factory=Packages)
    time: Time = Field(default_factory=Time)
    firewall: Firewall = Field(default_factory=Firewall)
    sysctl: dict[Role, dict[SysctlKey, Scalar]] = Field(default_factory=_default_sysctl)
    etcd: Etcd = Field(default_factory=Etcd)
    postgresql: PostgreSQL = Field(default_factory=PostgreSQL)
    patroni: Patroni = Field(default_factory=Patroni)
    pgbouncer: PgBouncer = Field(default_factory=PgBouncer)
    haproxy: HAProxy = Field(default_factory=HAProxy)
    web: Web = Field(default_factory=Web)
    legacy: Legacy = Field(default_factory=Legacy)
    move: Move = Field(default_factory=Move)
    backup: Backup = Field(default_factory=Backup)
    tls: Tls = Field(default_factory=Tls)
    secrets: Secrets = Field(default_factory=Secrets)
    users: Users = Field(default_factory=Users)
    monitoring: Monitoring = Field(default_factory=Monitoring)


#: The DCS keys halite sets (bootstrap.dcs and PATCH /config alike), in order.
DCS_KEYS = ("ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "primary_start_timeout",
            "synchronous_mode", "synchronous_mode_strict", "failsafe_mode")
#: The timing keys a profile may set.
PROFILE_KEYS = tuple(Timing.model_fields)


# --------------------------------------------------------------------------
# errors into sentences


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("from" if part == "from_" else str(part))
    return out


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional around a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                tp = models[0]
                continue
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` (for suggestions)."""
    tp: Any = Settings
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
            fields.update(tp.model_fields)
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _known(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


_TYPE_WORDS = {"int_type": "an integer", "string_type": "a string", "bool_type": "true or false",
               "dict_type": "a mapping", "list_type": "a list", "float_type": "a number",
               "model_type": "a mapping", "model_attributes_type": "a mapping"}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return repr(value)


def _sentence(err: dict) -> tuple[str, str] | None:
    loc = tuple(err["loc"])
    typ = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:  # a mapping's key itself is wrong: name the mapping
        loc = loc[:-2] if len(loc) >= 2 else loc[:-1]
    elif typ == "invalid_key":  # a model's key that is not a string; loc ends with the key itself
        loc = loc[:-1]
    if typ == "invalid_key" or (is_key and typ == "string_type"):
        hint = (" (YAML reads unquoted yes/no/on/off/true/false as booleans: quote it)"
                if isinstance(value, bool) else "")
        return _key(loc) or "(top level)", f"has the key {value!r}, which is not a string; keys are names{hint}"
    key = _key(loc)
    if typ == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = _known(parent) if parent else []
        near = _suggestion(loc)
        hint = f"did you mean {near!r}?" if near else (f"known keys: {', '.join(known)}" if known else "")
        return key, "unknown key" + (f"; {hint}" if hint else "")
    if typ == "missing":
        return key, "is missing"
    if typ == "value_error":
        return key, str(ctx.get("error", err["msg"]))
    if typ in _TYPE_WORDS:
        return key, f"is {_describe(value)}; expected {_TYPE_WORDS[typ]}"
    if typ == "literal_error":
        return key, f"is {_describe(value)}; allowed: {ctx.get('expected')}"
    if typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        word = {"greater_than_equal": "at least", "less_than_equal": "at most",
                "greater_than": "more than", "less_than": "less than"}[typ]
        bound = next(iter(ctx.values()))
        return key, f"is {_describe(value)}; must be {word} {bound}"
    if typ in ("too_short", "too_long"):
        n = ctx.get("actual_length")
        return key, ("is empty" if n == 0 else f"has {n} entries") + "; " + (
            f"at least {ctx.get('min_length')} needed" if typ == "too_short" else f"at most {ctx.get('max_length')}")
    return key, f"is {_describe(value)}; {err['msg']}"


def _suggestion(loc: tuple) -> str | None:
    """The known key nearest to the unknown key at ``loc``, if one is near."""
    parent = _model_at(loc[:-1])
    near = difflib.get_close_matches(str(loc[-1]), _known(parent), n=1, cutoff=0.6) if parent else []
    return near[0] if near else None


def _sentences(exc: ValidationError) -> list[tuple[str, str]]:
    errors = exc.errors(include_url=False)
    # a misspelt required key is one mistake: its "unknown key; did you mean" line says it, not also "is missing"
    said = {tuple(e["loc"][:-1]) + (_suggestion(tuple(e["loc"])),) for e in errors if e["type"] == "extra_forbidden"}
    out: list[tuple[str, str]] = []
    by_loc: dict[tuple, list[tuple[str, str]]] = {}
    for err in errors:
        if err["type"] == "missing" and tuple(err["loc"]) in said:
            continue
        s = _sentence(err)
        if s:
            by_loc.setdefault(tuple(err["loc"]), []).append(s)
    # a value wrong for every member of a union (e.g. str | int) gives one line per member: keep the most specific
    for lines in by_loc.values():
        specific = [(k, m) for k, m in lines if not m.startswith("is ") or "expected" not in m] or lines
        out.extend(line for line in dict.fromkeys(specific) if line not in out)
    return out


# --------------------------------------------------------------------------
# rules across keys


def _merged_dcs(s: Settings) -> dict:
    """The chosen profile under dcs, explicit dcs keys winning."""
    profile = s.patroni.profiles.get(s.patroni.profile)
    base = profile.model_dump(exclude_none=True) if profile else {}
    explicit = s.patroni.dcs.model_dump(exclude_none=True)
    return {**base, **explicit}


def _timing(where: str, values: dict) -> list[tuple[str, str]]:
    out = []
    for key, minimum in PATRONI_MINIMUMS.items():
        if key in values and values[key] < minimum:
            out.append((f"{where}.{key}", f"is {values[key]}; Patroni's minimum is {minimum}"))
    if not out and all(values.get(k) is not None for k in ("ttl", "loop_wait", "retry_timeout")):
        floor = values["loop_wait"] + 2 * values["retry_timeout"]
        if values["ttl"] < floor:
            out.append((f"{where}.ttl", f"is {values['ttl']}, below loop_wait + 2 x retry_timeout = {floor}"))
    return out


def cross_checks(s: Settings, raw_dcs: dict | None = None) -> list[tuple[str, str]]:
    """Rules that join several keys; every problem, not the first."""
    p: list[tuple[str, str]] = []
    topo = s.topology
    hosts = topo.hosts
    nets = {n: ipaddress.ip_network(v.cidr) for n, v in topo.networks.items()}

    # networks and addresses
    seen_addr: dict[str, str] = {}
    lower: dict[str, str] = {}
    for name, host in hosts.items():
        key = f"topology.hosts.{name}"
        if not host.addresses:
            p.append((f"{key}.addresses", "is empty: every host needs an address"))
        for net, addr in host.addresses.items():
            akey = f"{key}.addresses.{net}"
            if net not in nets:
                p.append((akey, f"names network {net!r}, which topology.networks does not define "
                                f"(known: {', '.join(nets)})"))
                continue
            if ipaddress.ip_address(addr) not in nets[net]:
                p.append((akey, f"{addr} is outside network {net} ({nets[net]})"))
            if addr in seen_addr:
                p.append((akey, f"{addr} is already the address of {seen_addr[addr]}"))
            seen_addr[addr] = name
        for role in sorted({r for r in host.roles if host.roles.count(r) > 1}):
            p.append((f"{key}.roles", f"names role {role!r} twice; each role once"))
    for n1, a in nets.items():
        for n2, b in nets.items():
            if n1 < n2 and a.overlaps(b):
                p.append((f"topology.networks.{n2}.cidr", f"{b} overlaps network {n1} ({a})"))
    for net, spec in topo.networks.items():
        if spec.control_address and ipaddress.ip_address(spec.control_address) not in nets[net]:
            p.append((f"topology.networks.{net}.control_address",
                      f"{spec.control_address} is outside network {net} ({nets[net]})"))
    if topo.lab_range:
        lab = ipaddress.ip_network(topo.lab_range)
        for net, n in nets.items():
            if not n.subnet_of(lab):
                p.append((f"topology.networks.{net}.cidr", f"{n} is outside lab_range {lab}"))

    def with_role(role: str) -> list[str]:
        return [h for h, v in hosts.items() if role in v.roles]

    for role in ("jump", "db", "haproxy"):
        if not with_role(role):
            p.append((f"topology.hosts (role {role})", f"no host has the role {role!r}"))
    if len(with_role("jump")) > 1:
        p.append(("topology.hosts (role jump)", f"one jump host is supported; the topology gives "
                                                 f"{', '.join(with_role('jump'))}"))
    if len(with_role("monitoring")) > 1:
        p.append(("topology.hosts (role monitoring)", f"one monitoring host (Prometheus) is supported; the "
                                                       f"topology gives {', '.join(with_role('monitoring'))}"))
    if len(with_role("backup")) > 1:
        p.append(("topology.hosts (role backup)", f"one backup host (the repository) is supported; the topology "
                                                   f"gives {', '.join(with_role('backup'))}"))
    for h in with_role("backup"):
        if "db" in hosts[h].roles:
            p.append((f"topology.hosts.{h}.roles", "has db and backup; the repository must live on another host "
                                                  "than the cluster's members (losing one must not lose both)"))
        if hosts[h].addresses and "private" not in hosts[h].addresses:
            p.append((f"topology.hosts.{h}.addresses", "the backup host needs an address on the 'private' network"))
    members = with_role("db")
    if members and (len(members) < 3 or len(members) % 2 == 0):
        p.append(("topology.hosts (role db: etcd members)",
                  f"etcd needs an odd number of members, at least 3; the topology gives {len(members)}"))
    for h in with_role("db"):
        if hosts[h].addresses and "private" not in hosts[h].addresses:
            p.append((f"topology.hosts.{h}.addresses", "a db host needs an address on the 'private' network"))
        if "legacy_db" in hosts[h].roles:
            p.append((f"topology.hosts.{h}.roles", "has db and legacy_db; the old server must live on another "
                                                  "host than the cluster's members"))
    if not any(n.control_address for n in topo.networks.values()):
        p.append(("topology.networks", "no network gives control_address (the control machine's address)"))

    # roles named by the firewall's table exist: one line per role (a missing jump, db or haproxy host is
    # reported above already)
    unheld: dict[str, list[str]] = {}
    for i, svc in enumerate(s.firewall.services):
        for field, roles in (("to", svc.to), ("from", svc.from_)):
            for role in roles:
                # backup and monitoring are optional: without such a host their services open nothing
                if role not in ("control", "jump", "db", "haproxy", "backup", "monitoring") and not with_role(role):
                    unheld.setdefault(role, []).append(f"firewall.services[{i}].{field}")
    for role, where in unheld.items():
        also = f" (also named by {', '.join(w.removeprefix('firewall.') for w in where[1:])})" if where[1:] else ""
        p.append((where[0], f"names role {role!r}, which no host of the topology has{also}; "
                            "give a host the role or remove it from the table"))
    # every port halite listens on is opened by the access table to the role that listens
    needed = [("etcd.client_port", s.etcd.client_port, "db"), ("etcd.peer_port", s.etcd.peer_port, "db"),
              ("postgresql.port", s.postgresql.port, "db"), ("patroni.restapi.port", s.patroni.restapi.port, "db"),
              ("pgbouncer.port", s.pgbouncer.port, "db"), ("haproxy.write_port", s.haproxy.write_port, "haproxy"),
              ("haproxy.read_port", s.haproxy.read_port, "haproxy"), ("web.http_port", s.web.http_port, "app"),
              ("legacy.port", s.legacy.port, "legacy_db")]
    if with_role("backup"):
        needed += [("backup.tls_port", s.backup.tls_port, "backup"), ("backup.tls_port", s.backup.tls_port, "db")]
    if with_role("monitoring"):
        mp = s.monitoring.ports
        needed += [("monitoring.ports.prometheus", mp.prometheus, "monitoring"),
                   ("monitoring.ports.dashboard", mp.dashboard, "monitoring"),
                   ("monitoring.ports.postgres_exporter", mp.postgres_exporter, "db"),
                   ("monitoring.ports.pgbouncer_exporter", mp.pgbouncer_exporter, "db"),
                   *[("monitoring.ports.node_exporter", mp.node_exporter, role) for role in ROLES]]
    for key, port, role in needed:
        if not with_role(role):
            continue
        if not any(role in svc.to and port in svc.ports for svc in s.firewall.services):
            p.append((key, f"port {port} is not opened to role {role} by any firewall.services entry "
                           "(the access table must list it, or no host could reach it)"))
    for i, svc in enumerate(s.firewall.services):
        if svc.network is not None and svc.network not in s.topology.networks:
            p.append((f"firewall.services[{i}].network", f"unknown network {svc.network!r}; the topology has "
                                                          f"{', '.join(s.topology.networks)}"))
    names = [svc.name for svc in s.firewall.services]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        p.append(("firewall.services", f"service {dup!r} is listed twice"))

    # ports: no two listeners on one port of one host
    clashes: dict[tuple[str, str], list[str]] = {}
    for name, host in hosts.items():
        listeners: dict[int, list[str]] = {}

        def listen(port: int, what: str) -> None:
            listeners.setdefault(port, []).append(what)

        roles = set(host.roles)
        listen(22, "ssh")
        if "db" in roles:
            listen(s.etcd.client_port, "etcd.client_port")
            listen(s.etcd.peer_port, "etcd.peer_port")
            listen(s.postgresql.port, "postgresql.port")
            listen(s.patroni.restapi.port, "patroni.restapi.port")
            listen(s.pgbouncer.port, "pgbouncer.port")
        if "haproxy" in roles:
            listen(s.haproxy.write_port, "haproxy.write_port")
            listen(s.haproxy.read_port, "haproxy.read_port")
            listen(s.haproxy.stats_port, "haproxy.stats_port")
        if "app" in roles:
            listen(s.web.http_port, "web.http_port")
            if "site" not in s.tls.unsafe_plaintext:
                listen(s.web.https_port, "web.https_port")
            listen(int(s.web.bind.rpartition(":")[2]), "web.bind")
        if "legacy_db" in roles:
            listen(s.legacy.port, "legacy.port")
        if "backup" in roles or ("db" in roles and with_role("backup")):
            listen(s.backup.tls_port, "backup.tls_port")
        if with_role("monitoring"):
            mp = s.monitoring.ports
            listen(mp.node_exporter, "monitoring.ports.node_exporter")
            if "db" in roles:
                listen(mp.postgres_exporter, "monitoring.ports.postgres_exporter")
                listen(mp.pgbouncer_exporter, "monitoring.ports.pgbouncer_exporter")
            if "monitoring" in roles:
                for key in ("prometheus", "alertmanager", "recorder", "dashboard"):
                    listen(getattr(mp, key), f"monitoring.ports.{key}")
        for port, what in listeners.items():
            if len(what) > 1:
                clashes.setdefault((what[-1], f"port {port} is also {', '.join(what[:-1])}"), []).append(name)
    for (key, msg), on in clashes.items():
        p.append((key, f"{msg} on {'host' if len(on) == 1 else 'hosts'} {', '.join(on)}"))
    if s.etcd.client_port == s.etcd.peer_port and not with_role("db"):
        p.append(("etcd.peer_port", "must differ from etcd.client_port"))

    if s.etcd.auto_compaction_mode == "revision" and not s.etcd.auto_compaction_retention.isdigit():
        p.append(("etcd.auto_compaction_retention", f"is {s.etcd.auto_compaction_retention!r}; with "
                                                    "auto_compaction_mode revision it is a number of revisions"))
    # etcd timing (etcd's tuning guide: election timeout at least 5 x the heartbeat)
    if s.etcd.election_timeout < 5 * s.etcd.heartbeat_interval:
        p.append(("etcd.election_timeout", f"is {s.etcd.election_timeout}; must be at least 5 x "
                                           f"heartbeat_interval = {5 * s.etcd.heartbeat_interval}"))

    # Patroni timing: the chosen profile must exist; every profile and the merged dcs obey Patroni's rules
    if s.patroni.profile not in s.patroni.profiles:
        p.append(("patroni.profile", f"unknown profile {s.patroni.profile!r}; known: "
                                     f"{', '.join(s.patroni.profiles) or 'none'}"))
    for name, values in s.patroni.profiles.items():
        p.extend(_timing(f"patroni.profiles.{name}", values.model_dump(exclude_none=True)))
    dcs = _merged_dcs(s)
    p.extend(_timing("patroni.dcs", dcs))
    if dcs.get("synchronous_mode") and 0 < len(members) < 2:
        p.append(("patroni.dcs.synchronous_mode", "needs a second eligible member; the topology has one db host"))

    # names that must differ
    usernames: dict[str, str] = {}
    for key in Users.model_fields:
        u = getattr(s.users, key).username
        if u in usernames:
            p.append((f"users.{key}.username", f"{u!r} is already users.{usernames[u]}.username"))
        usernames[u] = key
    if s.patroni.restapi.password is not None and s.patroni.restapi.password == s.users.superuser.password:
        p.append(("patroni.restapi.password", "must differ from users.superuser.password"))
    # outside the lab, no password or key copied from the lab's old examples
    if s.topology.name != "lab":
        given = {f"users.{k}.password": u.password for k, u in s.users}
        given.update({"patroni.restapi.password": s.patroni.restapi.password, "web.secret_key": s.web.secret_key})
        for key, value in given.items():
            if value is not None and hashlib.sha256(value.encode()).hexdigest() in LAB_EXAMPLE_SECRETS:
                p.append((key, f"is copied from the lab's examples; on topology {s.topology.name!r} leave it "
                               "empty (halite generates one) or give your own"))
        p.extend(_lab_only_sources(s))
    for key in Users.model_fields:
        pw = getattr(s.users, key).password
        if pw is None:
            continue  # generated: letters, digits, - and _
        # PgBouncer and Salt's postgres module take these as hashes, not passwords
        if re.match(r"^md5[0-9a-f]{32}$", pw) or pw.startswith("SCRAM-SHA-256$"):
            p.append((f"users.{key}.password", "looks like an md5 or SCRAM hash; PgBouncer and Salt would take it "
                                               "as one: give the password itself"))
        # Patroni creates these roles inside a DO $$ ... $$ block at bootstrap
        if key in ("superuser", "replication", "rewind") and "$$" in pw:
            p.append((f"users.{key}.password", "contains '$$', which ends the DO $$ block Patroni creates the "
                                               "role in; any other printable characters are allowed"))
    if s.users.app.database not in s.pgbouncer.databases:
        p.append(("pgbouncer.databases", f"must include the site's database {s.users.app.database!r} "
                                         "(users.app.database)"))
    if with_role("app") and s.web.listen_network not in topo.networks:
        p.append(("web.listen_network", f"is {s.web.listen_network!r}; known networks: {', '.join(topo.networks)}"))
    for h in with_role("app"):
        if s.web.listen_network in topo.networks and s.web.listen_network not in hosts[h].addresses:
            p.append(("web.listen_network", f"app host {h} has no address on network {s.web.listen_network!r}"))
    p.extend(_release_checks(s))
    return p


def _lab_only_sources(s: Settings) -> list[tuple[str, str]]:
    """Package sources only the lab may use: its mirror and wheel folder (``LAB_MIRROR``, built by
    ``halite lab up`` on the control machine, absent on real hosts) and sources trusted unsigned."""
    p: list[tuple[str, str]] = []
    where = f"on topology {s.topology.name!r}"
    for i, line in enumerate(s.packages.apt_sources):
        key = f"packages.apt_sources[{i}]"
        if LAB_MIRROR in line:
            p.append((key, f"is the lab's package mirror ({LAB_MIRROR}); {where} name your distribution's "
                           "or your organisation's repository"))
        elif re.search(r"(^|[\[\s])trusted=yes\b", line):
            p.append((key, f"trusts an unsigned source ([trusted=yes]); {where} give the repository's key "
                           "([signed-by=/path/to/key.gpg])"))
    for name, path in s.packages.apt_keys.items():
        if path.startswith(LAB_KEY_DIR):
            p.append((f"packages.apt_keys.{name}", f"is the lab mirror's key ({path}); {where} name your "
                                                   "repository's key"))
    if s.packages.pip_find_links and s.packages.pip_find_links.replace("file:", "").startswith(LAB_MIRROR):
        p.append(("packages.pip_find_links", f"is the lab's wheel folder ({LAB_MIRROR}/pypi); {where} leave it "
                                             "empty (PyPI) or name your own folder or index"))
    for name, repo in s.packages.yum_repos.items():
        if LAB_MIRROR in f"{repo.baseurl} {repo.gpgkey or ''}":
            p.append((f"packages.yum_repos.{name}", f"is the lab's package mirror ({LAB_MIRROR}); {where} name "
                                                    "your distribution's, PGDG's or your organisation's repository"))
        elif not repo.gpgcheck:
            p.append((f"packages.yum_repos.{name}.gpgcheck", f"is off; {where} a repository is checked with its key"))
    return p


def legacy_version(s: Settings, host: str) -> int:
    """The legacy server's PostgreSQL major on ``host``: ``legacy.version``, or its release's."""
    spec = s.topology.hosts[host]
    return platforms.host_postgresql(spec.os_family, spec.os_release, ["legacy_db"], s.postgresql.version,
                                     s.legacy.version)


def _release_checks(s: Settings) -> list[tuple[str, str]]:
    """Each host's release belongs to its family and ships the PostgreSQL it must run."""
    p: list[tuple[str, str]] = []
    # (key, version) -> {(family, release): [hosts]}: one line per release, naming its hosts
    wrong: dict[tuple[str, int], dict[tuple[str, Any], list[str]]] = {}
    for name, host in s.topology.hosts.items():
        family = host.os_family
        known = platforms.DEBIAN_RELEASES if family == "Debian" else platforms.REDHAT_RELEASES
        if host.os_release is not None and host.os_release not in known:
            p.append((f"topology.hosts.{name}.os_release", f"is {_describe(host.os_release)}; a {family} host runs "
                                                            f"{' or '.join(repr(r) for r in known)}"))
            continue
        release = platforms.release_of(family, host.os_release)
        offered = platforms.postgresql_versions(family, release)
        needs = []
        if "db" in host.roles:
            needs.append(("postgresql.version", s.postgresql.version))
        if "legacy_db" in host.roles:
            needs.append(("legacy.version", legacy_version(s, name)))
        for need in needs:
            if need[1] not in offered:
                wrong.setdefault(need, {}).setdefault((family, release), []).append(name)
    for (key, version), by_release in wrong.items():
        for (family, release), names in by_release.items():
            offered = ", ".join(map(str, platforms.postgresql_versions(family, release)))
            who = f"{names[0]} runs" if len(names) == 1 else f"{', '.join(names)} run"
            if family == "Debian":
                major = platforms.DEBIAN_RELEASES[release]["major"]
                p.append((key, f"is {version}; {who} Debian {major} ({release}), "
                               f"which ships PostgreSQL {offered} only"))
            else:
                p.append((key, f"is {version}; {who} {family} {release}, for which PGDG builds PostgreSQL {offered}"))
    return p


# --------------------------------------------------------------------------
# entry point


def _without_defaultable(raw: dict, exc: ValidationError) -> dict | None:
    """``raw`` without the keys of ``exc``'s errors, if each is unknown or has a default; else None."""
    out = copy.deepcopy(raw)
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if not loc or any(isinstance(part, int) or part == "[key]" for part in loc):
            return None
        if err["type"] != "extra_forbidden":
            parent = _model_at(loc[:-1])
            if parent is None:
                return None
            fields = {(f.alias or n): f for n, f in parent.model_fields.items()}
            if loc[-1] not in fields or fields[loc[-1]].is_required():
                return None
        node = out
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or loc[-1] not in node:
            return None
        del node[loc[-1]]
    return out


def validate(raw: Any) -> Settings:
    """Check a whole description (topology under ``topology``, settings beside it).

    :param raw: the merged mapping read from YAML.
    :returns: the typed, checked settings.
    :raises ConfigError: every problem found, one ``(key, message)`` each.
    """
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", f"is {_describe(raw)}; expected a mapping of settings")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = _sentences(exc)
        # Rules across keys need typed values. Where every wrong value is an
        # unknown key or a key with a default, check the rules once more with
        # those keys left out, so that one run reports both kinds of mistake.
        repaired = _without_defaultable(raw, exc)
        if repaired is not None:
            # a rule about a key that was left out (or about its parent) would mislead: skip those
            removed = [key for key, _ in problems]

            def related(key: str) -> bool:
                return any(key.startswith(r) or r.startswith(key.split(" ")[0]) for r in removed)
            try:
                problems += [pr for pr in cross_checks(Settings.model_validate(repaired))
                             if pr not in problems and not related(pr[0])]
            except ValidationError:
                pass
        raise ConfigError(problems) from None
    problems = cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def dump(settings: Settings) -> dict:
    """The checked settings as plain data (the pillar's shape): aliases, chosen profile merged under dcs."""
    data = settings.model_dump(by_alias=True, mode="json")
    data["patroni"]["dcs"] = {**{k: v for k, v in _merged_dcs(settings).items() if k != "postgresql"},
                              "postgresql": data["patroni"]["dcs"]["postgresql"]}
    for name, values in data["patroni"]["profiles"].items():
        data["patroni"]["profiles"][name] = {k: v for k, v in values.items() if v is not None}
    return data
