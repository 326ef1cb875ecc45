"""Topology and cluster settings: load, merge and validate.

One place decides whether a topology and its settings make sense. The lab,
the roster and the pillar (``pillar/halite.sls``) all call :func:`load`, so a
bad value stops ``halite lab up``, ``salt-ssh`` and ``salt-run`` alike, with
one message that names the key and the problem, before any host is touched.
"""
from __future__ import annotations

import copy
import ipaddress
import os
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PILLAR_DIR = REPO / "pillar"

#: Operating-system families the states know how to lay down.
KNOWN_OS_FAMILIES = ("Debian", "RedHat")

#: Roles a host may hold, and the Salt states each role brings.
ROLE_STATES: dict[str, list[str]] = {
    "jump": [],
    "db": ["etcd", "postgresql", "patroni", "pgbouncer"],
    "haproxy": ["haproxy"],
    "app": ["web"],
    "legacy_db": ["legacy"],
}
#: Roles that must have at least one host.
REQUIRED_ROLES = ("jump", "db", "haproxy")

#: Patroni's own lower bounds for its timing settings.
PATRONI_MINIMUMS = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}

#: PostgreSQL binary directories per OS family and major version.
PG_BINDIR = {
    "Debian": {v: f"/usr/lib/postgresql/{v}/bin" for v in (13, 14, 15, 16, 17, 18)},
    "RedHat": {v: f"/usr/pgsql-{v}/bin" for v in (13, 14, 15, 16, 17, 18)},
}


class ConfigError(ValueError):
    """A topology or setting that cannot be deployed. The message names the key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must hold a mapping at its top level")
    return data


def topology_path() -> Path:
    return Path(os.environ.get("HALITE_TOPOLOGY", PILLAR_DIR / "topology.yaml"))


def settings_paths() -> list[Path]:
    """Settings files, merged in this order (later wins).

    ``cluster.yaml`` holds halite's defaults, ``web.yaml`` the web project's,
    ``secrets.yaml`` the passwords, ``local.yaml`` (not in git) a site's or a
    test's overrides; ``HALITE_SETTINGS`` may name one more file.
    """
    paths = [PILLAR_DIR / "cluster.yaml", PILLAR_DIR / "web.yaml", PILLAR_DIR / "secrets.yaml",
             PILLAR_DIR / "local.yaml"]
    extra = os.environ.get("HALITE_SETTINGS")
    if extra:
        paths.append(Path(extra))
    return [p for p in paths if p.exists()]


def load(topology: dict | None = None, settings: dict | None = None) -> dict:
    """Load (or take), merge and validate the whole description.

    :param topology: a topology mapping; read from ``topology_path()`` if None.
    :param settings: a settings mapping; read from ``settings_paths()`` if None.
    :returns: ``{"topology": ..., plus every settings key}``, validated.
    :raises ConfigError: naming the key and the problem.
    """
    if topology is None:
        topology = _read_yaml(topology_path())
    if settings is None:
        settings = {}
        for path in settings_paths():
            settings = deep_merge(settings, _read_yaml(path))
    data = deep_merge(settings, {"topology": topology})
    data = apply_profile(data)
    validate(data)
    return data


def load_topology() -> dict:
    """The topology alone, validated (for the roster and the lab)."""
    topo = _read_yaml(topology_path())
    validate_topology(topo)
    return topo


def apply_profile(data: dict) -> dict:
    """Merge the chosen timing profile under ``patroni.dcs`` (explicit dcs values win)."""
    patroni = data.get("patroni")
    if not patroni:
        return data
    profiles = patroni.get("profiles") or {}
    for key, values in profiles.items():
        if not isinstance(values, dict):
            raise ConfigError(f"patroni.profiles.{key}", f"is {values!r}; a mapping of timing values was expected")
    if not patroni.get("profile"):
        return data
    name = patroni["profile"]
    if name not in profiles:
        raise ConfigError("patroni.profile", f"unknown profile {name!r}; known: {', '.join(profiles) or 'none'}")
    out = copy.deepcopy(data)
    out["patroni"]["dcs"] = deep_merge(profiles[name], patroni.get("dcs") or {})
    return out


# --------------------------------------------------------------------------
# validation


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] in (None, ""):
        raise ConfigError(f"{where}.{key}" if where else key, "is missing")
    return mapping[key]


def validate_topology(topo: dict) -> None:
    networks = _need(topo, "networks", "topology")
    nets = {}
    for name, net in networks.items():
        cidr = _need(net, "cidr", f"topology.networks.{name}")
        try:
            nets[name] = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise ConfigError(f"topology.networks.{name}.cidr", f"is not a network: {exc}") from exc
    hosts = _need(topo, "hosts", "topology")
    if not isinstance(hosts, dict) or not hosts:
        raise ConfigError("topology.hosts", "must list at least one host")
    seen_addr: dict[str, str] = {}
    seen_name: set[str] = set()
    for name, host in hosts.items():
        key = f"topology.hosts.{name}"
        if name.lower() in seen_name:
            raise ConfigError(key, "is a duplicate host name")
        seen_name.add(name.lower())
        if not isinstance(host, dict):
            raise ConfigError(key, "must be a mapping")
        family = host.get("os_family", "Debian")
        if family not in KNOWN_OS_FAMILIES:
            raise ConfigError(f"{key}.os_family", f"unknown OS family {family!r}; known: {', '.join(KNOWN_OS_FAMILIES)}")
        addresses = host.get("addresses")
        if not addresses:
            raise ConfigError(f"{key}.addresses", "is missing: every host needs an address")
        for net, addr in addresses.items():
            akey = f"{key}.addresses.{net}"
            if net not in nets:
                raise ConfigError(akey, f"names network {net!r}, which topology.networks does not define")
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError as exc:
                raise ConfigError(akey, f"is not an IP address: {addr!r}") from exc
            if ip not in nets[net]:
                raise ConfigError(akey, f"{addr} is outside network {net} ({nets[net]})")
            if str(ip) in seen_addr:
                raise ConfigError(akey, f"{addr} is already the address of {seen_addr[str(ip)]}")
            seen_addr[str(ip)] = name
        roles = host.get("roles") or []
        for role in roles:
            if role not in ROLE_STATES:
                raise ConfigError(f"{key}.roles", f"unknown role {role!r}; known: {', '.join(ROLE_STATES)}")
    for role in REQUIRED_ROLES:
        if not [h for h, v in hosts.items() if role in (v.get("roles") or [])]:
            raise ConfigError(f"topology.hosts (role {role})", f"no host has the role {role!r}")
    members = etcd_hosts(topo)
    if len(members) < 3 or len(members) % 2 == 0:
        raise ConfigError(
            "topology.hosts (role db: etcd members)",
            f"etcd needs an odd number of members, at least 3; the topology gives {len(members)}",
        )


def _check_timing(where: str, values: dict) -> None:
    """Patroni's floors, and its rule ``loop_wait + 2 x retry_timeout <= ttl``."""
    for key, minimum in PATRONI_MINIMUMS.items():
        if key in values and (not isinstance(values[key], int) or values[key] < minimum):
            raise ConfigError(f"{where}.{key}", f"is {values[key]!r}; Patroni's minimum is {minimum}")
    if all(k in values for k in ("ttl", "loop_wait", "retry_timeout")):
        floor = values["loop_wait"] + 2 * values["retry_timeout"]
        if values["ttl"] < floor:
            raise ConfigError(f"{where}.ttl", f"is {values['ttl']}, below loop_wait + 2 x retry_timeout = {floor}")


def validate_settings(data: dict) -> None:
    topo = data["topology"]
    pg = data.get("postgresql") or {}
    version = pg.get("version")
    if version is not None:
        for name, host in topo["hosts"].items():
            if "db" in (host.get("roles") or []):
                family = host.get("os_family", "Debian")
                if int(version) not in PG_BINDIR[family]:
                    raise ConfigError(
                        "postgresql.version",
                        f"no known binary directory for PostgreSQL {version} on {family} (host {name})",
                    )
    patroni = data.get("patroni") or {}
    dcs = patroni.get("dcs") or {}
    _check_timing("patroni.dcs", dcs)
    # every named profile, not only the chosen one: the bench PATCHes them in turn
    for name, values in (patroni.get("profiles") or {}).items():
        _check_timing(f"patroni.profiles.{name}", values)
    if dcs.get("synchronous_mode"):
        dbs = [h for h, v in topo["hosts"].items() if "db" in (v.get("roles") or [])]
        if len(dbs) < 2:
            raise ConfigError("patroni.dcs.synchronous_mode", "needs a second eligible member; the topology has one db host")
    for user, spec in (data.get("users") or {}).items():
        if not isinstance(spec, dict) or not spec.get("password"):
            raise ConfigError(f"users.{user}.password", "is missing or empty")


def validate(data: dict) -> None:
    """Raise :class:`ConfigError` for the first problem found."""
    validate_topology(data["topology"])
    validate_settings(data)


# --------------------------------------------------------------------------
# derived views


def hosts_with_role(topo: dict, role: str) -> list[str]:
    return [h for h, v in topo["hosts"].items() if role in (v.get("roles") or [])]


def etcd_hosts(topo: dict) -> list[str]:
    return hosts_with_role(topo, "db")


def cluster_address(topo: dict, host: str) -> str:
    """The address other hosts use for ``host``: private if it has one, else edge."""
    addrs = topo["hosts"][host]["addresses"]
    return addrs.get("private") or next(iter(addrs.values()))


def host_states(topo: dict, host: str) -> list[str]:
    states: list[str] = []
    for role in topo["hosts"][host].get("roles") or []:
        for state in ROLE_STATES.get(role, []):
            if state not in states:
                states.append(state)
    return states


def firewall_rules(data: dict, host: str) -> list[dict]:
    """The ports ``host`` opens and to whom, derived from the topology.

    SSH: the jump host accepts it from the control machine only; every other
    host from the jump host only. Services: from ``firewall.services``.
    """
    topo = data["topology"]
    roles = topo["hosts"][host].get("roles") or []
    control = [n["control_address"] for n in topo["networks"].values() if n.get("control_address")]

    def addresses_of(role: str) -> list[str]:
        if role == "control":
            return list(control)
        out = []
        for h in hosts_with_role(topo, role):
            out.extend(topo["hosts"][h]["addresses"].values())
        return out

    if "jump" in roles:
        ssh_from = list(control)
    else:
        ssh_from = addresses_of("jump")
    rules = [{"name": "ssh", "ports": [22], "sources": sorted(set(ssh_from))}]
    for i, svc in enumerate((data.get("firewall") or {}).get("services") or []):
        for key in ("name", "ports", "to", "from"):
            if key not in svc:
                raise ConfigError(f"firewall.services[{i}].{key}", "is missing")
        if not set(svc["to"]) & set(roles):
            continue
        sources = sorted({a for role in svc["from"] for a in addresses_of(role)})
        if sources:
            rules.append({"name": svc["name"], "ports": list(svc["ports"]), "sources": sources})
    return rules


def pillar_for(minion_id: str, data: dict | None = None) -> dict:
    """The pillar for one host: everything, plus ``host`` (this host's view)."""
    data = load() if data is None else data
    topo = data["topology"]
    out = copy.deepcopy(data)
    if minion_id in topo["hosts"]:
        entry = topo["hosts"][minion_id]
        out["host"] = {
            "name": minion_id,
            "roles": entry.get("roles") or [],
            "os_family": entry.get("os_family", "Debian"),
            "address": cluster_address(topo, minion_id),
            "states": host_states(topo, minion_id),
            "firewall": firewall_rules(data, minion_id),
        }
        # secret-bearing strings, escaped once in Python (halite.formats); templates print them
        from halite import formats

        out["host"]["dsn"] = formats.web_dsns(data, minion_id)
        out["host"]["pgbouncer_userlist"] = formats.pgbouncer_userlist(data)
    out["addresses"] = {h: cluster_address(topo, h) for h in topo["hosts"]}
    out["roles"] = {role: hosts_with_role(topo, role) for role in ROLE_STATES}
    return {"halite": out}
