"""Benchmark results: JSON for machines, a markdown table for people, a PNG plot.

:func:`write_results` takes the failover runs (one dict per run, for instance
built from :meth:`halite.workload.Workload.analyze` plus the scenario, the
profile and the measured heal time) and writes, under ``out_dir``:

* ``<name>.json`` -- ``{"generated": ISO time, "machine": {...}, "summary":
  [...], "runs": [...]}``;
* ``<name>.md`` -- median and max per (scenario, profile) of
  ``write_unavailable_s``, ``read_unavailable_s`` and ``heal_s``, the sum of
  ``lost_writes``, the number of runs with a dual primary, and how the
  ``halite`` profile compares with ``patroni-defaults`` in the same scenario;
* ``<name>.png`` -- successful writes per 0.1 s against seconds since the
  fault, one small plot per scenario, one line (median over runs) per profile,
  from the ``timeline`` each run may carry (``{"bucket_s": 0.1, "t": [...],
  "writes": [...]}`` as returned by ``Workload.analyze``).

:func:`write_json_table` is the generic version for other benchmarks: any
rows, any columns, ``<name>.json`` and ``<name>.md``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

REQUIRED_RUN_KEYS = (
    "scenario",
    "profile",
    "synchronous_mode",
    "write_unavailable_s",
    "read_unavailable_s",
    "acked_writes",
    "lost_writes",
    "dual_primary",
    "heal_s",
)
BASELINE_PROFILE = "patroni-defaults"
TUNED_PROFILE = "halite"
STAT_KEYS = ("write_unavailable_s", "read_unavailable_s", "heal_s")
#: An alert the alert watch saw firing sooner than this after the fault was firing before it
#: (the watch polls every second from the fault on).
FIRED_BEFORE_S = 0.5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def machine_info() -> dict:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "hostname": platform.node(),
        "system": platform.system(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_gib"] = round(int(line.split()[1]) / 1024**2, 2)
                    break
    except OSError:
        pass
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.3g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(_fmt(v) for v in x)
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(v) for v in r) + " |")
    return "\n".join(out) + "\n"


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _lost_count(x: Any) -> int | None:
    if x is None:
        return None
    if isinstance(x, (list, tuple, set)):
        return len(x)
    return int(x)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad result name {name!r}: letters, digits, '_', '-', '.' only")


def _dump(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------
# failover runs
# --------------------------------------------------------------------------


def validate_runs(runs: Sequence[dict]) -> None:
    """Raise ValueError naming the first missing key (and which run lacks it)."""
    if not isinstance(runs, (list, tuple)):
        raise ValueError("runs must be a list of dicts")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ValueError(f"run {i} is not a dict")
        for key in REQUIRED_RUN_KEYS:
            if key not in run:
                what = f"{run.get('scenario', '?')}/{run.get('profile', '?')}"
                raise ValueError(f"run {i} ({what}) is missing required key {key!r}")


def _groups(runs: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((str(r["scenario"]), str(r["profile"])), []).append(r)
    return groups


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when undefined."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}× ({(r - 1) * 100:+.0f}%)"


def summarize(runs: Sequence[dict]) -> list[dict]:
    """One row per (scenario, profile), in order of first appearance.

    Medians and maxima ignore runs where the value is None; ``lost_writes``
    is summed (a list counts as its length; None = not verified, counted in
    ``unverified_runs``); ``dual_primary_runs`` counts truthy ``dual_primary``.
    Rows of the ``halite`` profile get ``*_vs_defaults``: the ratio of their
    median to the ``patroni-defaults`` median in the same scenario.
    """
    validate_runs(runs)
    rows = []
    medians: dict[tuple[str, str], dict[str, float | None]] = {}
    for (scenario, profile), rs in _groups(runs).items():
        row: dict[str, Any] = {"scenario": scenario, "profile": profile, "runs": len(rs)}
        modes = sorted({str(r["synchronous_mode"]) for r in rs})
        row["synchronous_mode"] = modes[0] if len(modes) == 1 else modes
        meds = {}
        for k in STAT_KEYS:
            vals = [v for v in (_num(r.get(k)) for r in rs) if v is not None]
            row[f"{k}_median"] = round(statistics.median(vals), 4) if vals else None
            row[f"{k}_max"] = round(max(vals), 4) if vals else None
            meds[k] = row[f"{k}_median"]
        medians[(scenario, profile)] = meds
        lost = [_lost_count(r["lost_writes"]) for r in rs]
        row["lost_writes_sum"] = sum(v for v in lost if v is not None)
        row["unverified_runs"] = sum(1 for v in lost if v is None)
        row["acked_writes_sum"] = sum(int(_num(r["acked_writes"]) or 0) for r in rs)
        row["dual_primary_runs"] = sum(1 for r in rs if r["dual_primary"])
        rows.append(row)
    for row in rows:
        if row["profile"] != TUNED_PROFILE:
            continue
        base = medians.get((row["scenario"], BASELINE_PROFILE))
        if base is None:
            continue
        mine = medians[(row["scenario"], row["profile"])]
        for k in STAT_KEYS:
            r = _ratio(mine[k], base[k])
            row[f"{k}_vs_defaults"] = None if r is None else round(r, 4)
    return rows


def markdown_table(runs: Sequence[dict]) -> str:
    """The per-(scenario, profile) table and the profile comparison, as markdown."""
    rows = summarize(runs)
    cols = ["scenario", "profile", "runs", "synchronous_mode",
            "write unavail. s median", "write unavail. s max",
            "read unavail. s median", "read unavail. s max",
            "heal s median", "heal s max",
            "lost writes (sum)", "dual primary (runs)",
            f"write unavail. {TUNED_PROFILE} vs {BASELINE_PROFILE}"]
    body = []
    for r in rows:
        lost = str(r["lost_writes_sum"]) + (
            f" ({r['unverified_runs']} unverified)" if r["unverified_runs"] else "")
        body.append([
            r["scenario"], r["profile"], r["runs"], r["synchronous_mode"],
            r["write_unavailable_s_median"], r["write_unavailable_s_max"],
            r["read_unavailable_s_median"], r["read_unavailable_s_max"],
            r["heal_s_median"], r["heal_s_max"],
            lost, r["dual_primary_runs"],
            _fmt_ratio(r.get("write_unavailable_s_vs_defaults"))
            if "write_unavailable_s_vs_defaults" in r else "–",
        ])
    text = _md(cols, body)
    comp = [r for r in rows if any(f"{k}_vs_defaults" in r for k in STAT_KEYS)]
    if comp:
        text += (f"\nMedians, `{TUNED_PROFILE}` ÷ `{BASELINE_PROFILE}` in the same scenario "
                 "(below 1× is better):\n\n")
        text += _md(
            ["scenario", "write unavailable", "read unavailable", "heal"],
            [[r["scenario"]] + [_fmt_ratio(r.get(f"{k}_vs_defaults")) for k in STAT_KEYS]
             for r in comp],
        )
    return text + cut_table(runs) + alert_table(runs)


def cut_table(runs: Sequence[dict]) -> str:
    """Each lock-expiry fault on its own line (runs that recorded ``lock_age_s``): when in
    Patroni's loop it came and how long writes stopped, sorted by the lock's age, with the
    write gap's quartiles per (scenario, profile). Empty when no run recorded a lock age."""
    cuts = [r for r in runs if "lock_age_s" in r]
    if not cuts:
        return ""
    text = ("\nEach fault that waits for the leader lock to expire, by the lock's age at the fault "
            "(the last renewal in the leader's Patroni journal; the fault came at a random offset "
            "into the HA loop):\n\n")
    text += _md(["scenario", "profile", "loop_wait s", "offset into the loop s", "lock age s",
                 "write unavail. s", "writes back s"],
                [[r["scenario"], r["profile"], r.get("loop_wait"), r.get("cut_offset_s"),
                  r.get("lock_age_s"), r["write_unavailable_s"], r.get("writes_back_s")]
                 for r in sorted(cuts, key=lambda r: (r["scenario"], r["profile"],
                                                      _num(r.get("lock_age_s")) or -1.0))])
    rows = []
    for (scenario, profile), rs in _groups(cuts).items():
        gaps = sorted(v for v in (_num(r["write_unavailable_s"]) for r in rs) if v is not None)
        if not gaps:
            continue
        q = statistics.quantiles(gaps, n=4, method="inclusive") if len(gaps) > 1 else [gaps[0]] * 3
        rows.append([scenario, profile, len(gaps), gaps[0], round(q[0], 2), round(q[1], 2),
                     round(q[2], 2), gaps[-1]])
    text += "\nWrite unavailable, distribution:\n\n" + _md(
        ["scenario", "profile", "runs", "min", "25 %", "median", "75 %", "max"], rows)
    return text


def alert_table(runs: Sequence[dict]) -> str:
    """Time to alert per (scenario, profile): for each alert Prometheus showed during the
    runs (``alerts`` of a run: seconds from the fault to pending and to firing, recorded by
    :class:`halite.failover.AlertWatch`), in how many runs it was pending and fired, and the
    median seconds to each. An alert already firing at the first poll (before
    :data:`FIRED_BEFORE_S`) fired before the fault and is not counted as fired. Empty when no run recorded alerts."""
    groups = {k: [r for r in rs if r.get("alerts")] for k, rs in _groups(runs).items()}
    rows = []
    for (scenario, profile), rs in groups.items():
        names = sorted({name for r in rs for name in r["alerts"]})
        for name in names:
            seen = [r["alerts"][name] for r in rs if name in r["alerts"]]
            pending = [a["pending_s"] for a in seen if a.get("pending_s") is not None]
            # the first poll comes within 0.5 s of the fault: firing then means firing before it
            firing = [a["firing_s"] for a in seen if (a.get("firing_s") or 0) >= FIRED_BEFORE_S]
            rows.append([scenario, profile, name, f"{len(pending)}/{len(rs)}",
                         round(statistics.median(pending), 1) if pending else None,
                         f"{len(firing)}/{len(rs)}",
                         round(statistics.median(firing), 1) if firing else None])
    if not rows:
        return ""
    return ("\nAlerts during the runs (Prometheus polled every second; seconds from the fault; "
            "an alert fires once its condition has held for the rule's `for`):\n\n"
            + _md(["scenario", "profile", "alert", "pending in", "to pending s (median)",
                   "fired in", "to firing s (median)"], rows))


def print_table(runs: Sequence[dict], file: Any = None) -> str:
    """Print :func:`markdown_table` (to stdout by default) and return it."""
    text = markdown_table(runs)
    print(text, end="", file=file or sys.stdout)
    return text


def _timeline_series(tl: Any) -> tuple[list[float], list[float]] | None:
    """(t, writes per 0.1 s) from a run's timeline, None if unusable."""
    if not isinstance(tl, dict):
        return None
    t, w = tl.get("t"), tl.get("writes")
    if not t or not w or len(t) != len(w):
        return None
    bucket = _num(tl.get("bucket_s")) or 0.1
    scale = 0.1 / bucket
    return [float(x) for x in t], [float(v) * scale for v in w]


def plot_timelines(runs: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write availability around each fault, one subplot per scenario -> PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    per: dict[str, dict[str, list[tuple[list[float], list[float]]]]] = {}
    for r in runs:
        s = _timeline_series(r.get("timeline"))
        if s is None:
            continue
        per.setdefault(str(r["scenario"]), {}).setdefault(str(r["profile"]), []).append(s)

    path = Path(path)
    n = len(per)
    ncols = min(3, max(1, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.2 * nrows), squeeze=False)
    colors = {BASELINE_PROFILE: "tab:orange", TUNED_PROFILE: "tab:blue"}
    if not per:
        axes[0][0].text(0.5, 0.5, "no run carries a timeline", ha="center", va="center")
        axes[0][0].set_axis_off()
    for i, (scenario, profiles) in enumerate(per.items()):
        ax = axes[i // ncols][i % ncols]
        for j, (profile, series) in enumerate(profiles.items()):
            color = colors.get(profile, f"C{(j + 2) % 10}")
            buckets: dict[int, list[float]] = {}
            for t, w in series:
                if len(series) > 1:
                    ax.step(t, w, where="post", color=color, alpha=0.2, linewidth=0.7)
                for x, v in zip(t, w):
                    buckets.setdefault(round(x / 0.1), []).append(v)
            keys = sorted(buckets)
            ax.step([k * 0.1 for k in keys], [statistics.median(buckets[k]) for k in keys],
                    where="post", color=color, linewidth=1.4,
                    label=f"{profile} (n={len(series)})")
        ax.axvline(0, color="tab:red", linestyle="--", linewidth=1, label="fault")
        ax.set_title(scenario, fontsize=10)
        ax.set_xlabel("seconds since fault", fontsize=8)
        ax.set_ylabel("writes acked / 0.1 s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="best")
    for k in range(n, nrows * ncols):
        if n:
            axes[k // ncols][k % ncols].set_axis_off()
    fig.suptitle("Write availability around the fault", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(runs: list[dict], out_dir: str | os.PathLike = "bench/results",
                  name: str = "failover", plot: bool = True, generated: str | None = None,
                  machine: dict | None = None) -> dict[str, Path]:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>.png`` under ``out_dir``.

    Every run must have the keys in :data:`REQUIRED_RUN_KEYS` (ValueError
    naming the missing one otherwise).  Returns ``{"json": path, "md": path,
    "png": path}``.
    """
    _check_name(name)
    validate_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = generated or _now()  # a table made again from a run's JSON keeps its date
    machine = machine or machine_info()
    summary = summarize(runs)
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md"}
    _dump(paths["json"], {"generated": generated, "machine": machine,
                          "summary": summary, "runs": list(runs)})
    md = (f"# Failover benchmark ({name})\n\n"
          f"Generated {generated} on {machine.get('nproc')} CPUs"
          + (f" ({machine['cpu_model']})" if machine.get("cpu_model") else "")
          + (f", {machine['mem_total_gib']} GiB RAM" if machine.get("mem_total_gib") else "")
          + f"; {len(runs)} runs.\n\n" + markdown_table(runs)
          + "\nUnavailable = longest time without a successful write (read) around the fault; "
            "heal = time until the cluster is whole again; lost writes = acknowledged commits "
            "missing on the new primary; dual primary = runs where two primaries acknowledged "
            "writes interleaved in time.\n")
    if plot:
        paths["png"] = plot_timelines(runs, out / f"{name}.png")
        md += f"\n![write availability]({name}.png)\n"
    _write_text(paths["md"], md)
    return paths


# --------------------------------------------------------------------------
# any table
# --------------------------------------------------------------------------


def write_json_table(name: str, rows: Sequence[dict], columns: Sequence[str],
                     out_dir: str | os.PathLike = "bench/results",
                     title: str | None = None, notes: str | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.json`` and ``<name>.md`` for any benchmark.

    ``rows`` are dicts; ``columns`` the keys shown, in order (each row must
    have them all: ValueError otherwise; other keys go into the JSON only).
    The JSON is ``{"generated", "machine", "columns", "rows"}``.  Returns
    ``{"json": path, "md": path}``.
    """
    _check_name(name)
    if not columns:
        raise ValueError("columns must not be empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is not a dict")
        for c in columns:
            if c not in row:
                raise ValueError(f"row {i} is missing column {c!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = _now()
    machine = machine_info()
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md"}
    _dump(paths["json"], {"generated": generated, "machine": machine,
                          "columns": list(columns), "rows": list(rows)})
    md = (f"# {title or name}\n\nGenerated {generated} on {machine.get('nproc')} CPUs.\n\n"
          + _md(list(columns), [[row[c] for c in columns] for row in rows])
          + (f"\n{notes}\n" if notes else ""))
    _write_text(paths["md"], md)
    return paths
