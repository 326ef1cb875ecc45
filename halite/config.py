"""Topology and settings: read, merge, check.

One place decides whether a description makes sense. The lab, the roster,
the pillar (``pillar/stack.sls``) and ``halite config check`` all call
:func:`load`, so a bad value stops ``halite lab up``, ``salt-ssh`` and
``salt-run`` alike, before any host is touched, with one line per problem
naming the key, the value and what is allowed. The checks themselves are the
typed model in :mod:`halite.model`; each host's view is :mod:`halite.view`.

Files, merged in this order (later wins):

- ``pillar/topology.yaml`` (or ``HALITE_TOPOLOGY``): hosts, roles, addresses;
- ``pillar/lab.yaml``: the lab's package sources (its local mirror), only for the
  lab's topology (``name: lab``);
- ``pillar/local.yaml`` (not in git): a site's own values;
- ``HALITE_SETTINGS``: one more file (tests, benchmarks).

Everything not set there takes the model's default (see ``pillar.example``).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from halite import model, view
from halite.model import ConfigError  # noqa: F401  (the one error type, re-exported)

REPO = Path(__file__).resolve().parent.parent
PILLAR_DIR = REPO / "pillar"

# derived facts live in halite.view; these names stay importable from here
ROLE_STATES = view.ROLE_STATES
hosts_with_role = view.hosts_with_role
etcd_hosts = view.etcd_hosts
cluster_address = view.cluster_address
host_states = view.host_states
firewall_rules = view.firewall_rules


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path) -> dict:
    """A YAML file holding a mapping, or :class:`ConfigError` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must hold a mapping at its top level")
    return data


def topology_path() -> Path:
    return Path(os.environ.get("HALITE_TOPOLOGY", PILLAR_DIR / "topology.yaml"))


def settings_paths(topology: dict | None = None) -> list[Path]:
    """Settings files that exist, in merge order (later wins).

    ``pillar/lab.yaml`` (the lab's mirror, wheels and test-friendly timings) only for the lab's
    topology (``name: lab``): a site's topology starts from halite's defaults.

    :param topology: the topology the settings go with (default: the file :func:`topology_path` names).
    """
    if topology is None:
        try:
            topology = read_yaml(topology_path())
        except ConfigError:
            topology = {}  # reported by whoever reads the topology
    lab = PILLAR_DIR / "lab.yaml" if topology.get("name") == "lab" else None
    paths = [p for p in (lab, PILLAR_DIR / "local.yaml") if p is not None and p.exists()]
    extra = os.environ.get("HALITE_SETTINGS")
    return paths + ([Path(extra)] if extra else [])


def raw(topology: dict | None = None, settings: dict | None = None,
        topology_file: Path | None = None, settings_files: list[Path] | None = None) -> dict:
    """The merged, unchecked description."""
    if topology is None:
        topology = read_yaml(topology_file or topology_path())
    if settings is None:
        settings = {}
        for path in (settings_paths(topology) if settings_files is None else settings_files):
            settings = deep_merge(settings, read_yaml(path))
    if "topology" in settings:
        raise ConfigError("topology", "belongs in the topology file, not in a settings file")
    return {**settings, "topology": topology}


def load(topology: dict | None = None, settings: dict | None = None,
         topology_file: Path | None = None, settings_files: list[Path] | None = None,
         generate: bool = True) -> dict:
    """Read (or take), merge and check the whole description.

    :param topology: a topology mapping; read from ``topology_path()`` if None.
    :param settings: a settings mapping; read from ``settings_paths()`` if None.
    :param generate: fill in the secrets the settings leave empty, generated on first use
        and kept on this (the control) machine (:func:`halite.view.with_generated`).
    :returns: ``{"topology": ..., plus every settings key}``, checked, defaults
        filled in, the chosen timing profile merged under ``patroni.dcs``.
    :raises ConfigError: every problem, one line each.
    """
    data = model.dump(model.validate(raw(topology, settings, topology_file, settings_files)))
    return view.with_generated(data) if generate else data


def load_topology() -> dict:
    """The checked topology alone (for the roster and the lab)."""
    return load()["topology"]


def check(topology_file: Path | None = None, settings_files: list[Path] | None = None) -> list[tuple[str, str]]:
    """Every problem of a description as ``(key, message)``; empty when it is good."""
    try:
        load(topology_file=topology_file, settings_files=settings_files, generate=False)
    except ConfigError as exc:
        return exc.problems
    return []


def pillar_for(minion_id: str, data: dict | None = None) -> dict:
    """The pillar for one host: its view, and only the secrets its roles need."""
    return view.pillar_for(minion_id, load() if data is None else data)


def show(host: str, data: dict | None = None) -> dict[str, Any]:
    """``host``'s pillar with every secret masked (``halite config show``)."""
    data = load() if data is None else data
    if host not in data["topology"]["hosts"] and host != "control":
        raise ConfigError("host", f"{host!r} is not in the topology; hosts: {', '.join(data['topology']['hosts'])}, "
                                  "or control (the orchestrations' view)")
    from halite import formats

    pillar = view.pillar_for(host, data)["halite"]
    mine = pillar.get("host", {})
    for key in mine.get("secrets", []):
        *parents, last = key.split(".")
        parent = pillar
        for part in parents:
            parent = parent[part]
        parent[last] = view.MASK
    # strings built from secrets: the DSNs without their passwords, the userlist whole
    for name, dsn in (mine.get("dsn") or {}).items():
        if "password" in dsn:
            mine["dsn"][name] = formats.without_password(dsn) + f" password={view.MASK}"
    if "pgbouncer_userlist" in mine:
        mine["pgbouncer_userlist"] = view.MASK
    return pillar
