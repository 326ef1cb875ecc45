"""``pillar.example``, generated from the model: every key, its default and
its meaning, so the example cannot drift from what halite really does.

``halite config example > pillar.example`` writes it; a unit test compares
the committed file with this output.
"""
from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel

from halite import model

HEADER = """\
# Every setting halite reads, with halite's defaults (generated from
# halite/model.py by `halite config example`; do not edit by hand).
# Put yours in pillar/local.yaml (ignored by git) or in a file named by
# HALITE_SETTINGS; they are merged over pillar/lab.yaml and checked
# (`halite config check`) before any run. Hosts, roles and addresses live in
# the topology file (pillar/topology.yaml). Every password and key left empty
# (null) is generated on first use and kept on the control machine only
# (.halite/<topology>/secrets.yaml, mode 0600, ignored by git); each host
# receives only the secrets its roles need (`halite config show HOST`). Your
# own may hold any printable character (quotes, $, :, \\, spaces, #,
# non-ASCII; no emoji in the roles Salt creates: pgbouncer_auth, app,
# legacy_move); halite escapes them for every file they land in
# (halite/formats.py). Keep them in pillar/local.yaml or encrypt them with
# Salt's gpg renderer (README, Security).
"""

def defaults() -> dict:
    """The model's defaults as plain data (required secrets left out)."""
    from halite import config

    topo = config.read_yaml(config.PILLAR_DIR / "topology.yaml")
    data = model.Settings.model_validate({"topology": topo}).model_dump(by_alias=True, mode="json")
    data.pop("topology")
    return data


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("...").strip()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    tp = model._unwrap(annotation)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _emit(cls: type[BaseModel], values: dict | None, indent: int, out: list[str]) -> None:
    """Print the fields of ``cls`` with their values (``None``: no defaults, required)."""
    pad = " " * indent
    for name, field in cls.model_fields.items():
        key = field.alias or name
        if cls is model.Settings and key == "topology":
            continue
        sub = _model_of(field.annotation)
        desc = field.description or ""
        if indent == 0:
            out.append("")
        if values is None or key not in values:
            if sub is not None:
                out.append(f"{pad}{key}:" + (f"  # {desc}" if desc else ""))
                _emit(sub, None, indent + 2, out)
            else:
                out.append(f"{pad}# {key}: ...  ({'; '.join(x for x in (desc, 'required') if x)})")
            continue
        value = values[key]
        if sub is not None and isinstance(value, dict) and typing.get_origin(model._unwrap(field.annotation)) is None:
            out.append(f"{pad}{key}:" + (f"  # {desc}" if desc else ""))
            _emit(sub, value, indent + 2, out)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.extend([f"{pad}# {desc}"] if desc else [])
            out.append(f"{pad}{key}:")
            out.extend(f"{pad}  - {_flow(v)}" for v in value)
        elif isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            out.extend([f"{pad}# {desc}"] if desc else [])
            out.append(f"{pad}{key}:")
            out.extend(f"{pad}  {k}: {_flow(v)}" for k, v in value.items())
        else:
            out.append(f"{pad}{key}: {_flow(value)}" + (f"  # {desc}" if desc else ""))


def render() -> str:
    """The text of ``pillar.example``."""
    out: list[str] = [HEADER.rstrip("\n")]
    _emit(model.Settings, defaults(), 0, out)
    return "\n".join(out) + "\n"
