"""halite.report on synthetic runs."""
from __future__ import annotations

import json

import pytest

from halite import report


def run(scenario, profile, w, r, heal, lost=0, dual=False, timeline=True):
    d = {"scenario": scenario, "profile": profile, "synchronous_mode": profile == "halite",
         "write_unavailable_s": w, "read_unavailable_s": r, "acked_writes": 1000,
         "lost_writes": lost, "dual_primary": dual, "heal_s": heal}
    if timeline:
        t = [round(-2 + i * 0.1, 4) for i in range(60)]
        d["timeline"] = {"bucket_s": 0.1, "t": t,
                         "writes": [0 if 0 <= x < w else 30 for x in t], "reads": [10] * 60}
    return d


RUNS = [
    run("kill-primary", "patroni-defaults", 10.0, 8.0, 40.0, lost=3),
    run("kill-primary", "patroni-defaults", 12.0, 9.0, 50.0, lost=2, dual=True),
    run("kill-primary", "patroni-defaults", 30.0, 7.0, 45.0),
    run("kill-primary", "halite", 4.0, 2.0, 20.0, timeline=False),
    run("kill-primary", "halite", 2.0, 3.0, 25.0),
    run("partition", "halite", 1.0, 1.0, None),
]


def test_summary_medians_max_sums():
    rows = {(r["scenario"], r["profile"]): r for r in report.summarize(RUNS)}
    d = rows[("kill-primary", "patroni-defaults")]
    assert d["runs"] == 3
    assert d["write_unavailable_s_median"] == 12.0 and d["write_unavailable_s_max"] == 30.0
    assert d["read_unavailable_s_median"] == 8.0 and d["read_unavailable_s_max"] == 9.0
    assert d["heal_s_median"] == 45.0 and d["heal_s_max"] == 50.0
    assert d["lost_writes_sum"] == 5 and d["dual_primary_runs"] == 1
    h = rows[("kill-primary", "halite")]
    assert h["write_unavailable_s_median"] == 3.0 and h["write_unavailable_s_max"] == 4.0
    assert h["heal_s_median"] == 22.5
    assert h["lost_writes_sum"] == 0 and h["dual_primary_runs"] == 0
    assert h["write_unavailable_s_vs_defaults"] == pytest.approx(3.0 / 12.0)
    assert h["heal_s_vs_defaults"] == pytest.approx(22.5 / 45.0)
    p = rows[("partition", "halite")]
    assert p["heal_s_median"] is None and "write_unavailable_s_vs_defaults" not in p


def test_write_results_files(tmp_path, capsys):
    paths = report.write_results(RUNS, out_dir=tmp_path / "bench" / "results")
    assert paths["json"].name == "failover.json" and paths["md"].name == "failover.md"
    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"generated", "machine", "runs"}
    assert data["machine"]["nproc"] >= 1
    assert len(data["runs"]) == len(RUNS)
    for r in data["runs"]:
        assert set(report.REQUIRED_RUN_KEYS) <= set(r)
    md = paths["md"].read_text()
    assert "| kill-primary | patroni-defaults | 3 |" in md
    assert "12.00" in md and "30.00" in md
    assert "0.25×" in md  # halite write median 3 / defaults 12
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    text = report.print_table(RUNS)
    out = capsys.readouterr().out
    assert out == text and "| partition | halite | 1 |" in out


def test_plot_without_timelines(tmp_path):
    runs = [run("s", "halite", 1.0, 1.0, 2.0, timeline=False)]
    paths = report.write_results(runs, out_dir=tmp_path, name="nt")
    assert paths["png"].exists() and paths["png"].stat().st_size > 0


def test_missing_key_raises(tmp_path):
    bad = dict(RUNS[0])
    del bad["heal_s"]
    with pytest.raises(ValueError, match="heal_s"):
        report.write_results([RUNS[1], bad], out_dir=tmp_path)
    assert not (tmp_path / "failover.json").exists()
    with pytest.raises(ValueError, match="lost_writes"):
        report.validate_runs([{k: v for k, v in RUNS[0].items() if k != "lost_writes"}])


def test_write_json_table(tmp_path):
    rows = [{"endpoint": "/", "rps": 1234.5, "p99_ms": 12.3, "extra": 1},
            {"endpoint": "/api", "rps": 99.0, "p99_ms": None}]
    paths = report.write_json_table("web", rows, ["endpoint", "rps", "p99_ms"],
                                    out_dir=tmp_path, title="Web benchmark")
    data = json.loads(paths["json"].read_text())
    assert data["columns"] == ["endpoint", "rps", "p99_ms"] and data["rows"][0]["extra"] == 1
    assert "generated" in data and "machine" in data
    md = paths["md"].read_text()
    assert md.startswith("# Web benchmark")
    assert "| / | 1234.50 | 12.30 |" in md and "| /api | 99.00 | – |" in md
    with pytest.raises(ValueError, match="p99_ms"):
        report.write_json_table("web", [{"endpoint": "/"}], ["endpoint", "p99_ms"],
                                out_dir=tmp_path)
    with pytest.raises(ValueError):
        report.write_json_table("../evil", rows, ["endpoint"], out_dir=tmp_path)


def test_cut_table_lists_each_lock_expiry_fault_by_lock_age_with_quartiles():
    cuts = []
    for gap, age in [(21.0, 0.3), (19.5, 2.7), (20.2, 1.5), (22.0, None)]:
        r = run("primary-poweroff", "halite", gap, 1.0, 30.0, timeline=False)
        r.update(lock_age_s=age, cut_offset_s=1.1, loop_wait=3.0, writes_back_s=gap)
        cuts.append(r)
    text = report.cut_table(RUNS + cuts)
    lines = [ln for ln in text.splitlines() if ln.startswith("| primary-poweroff")]
    # four cuts by lock age (the unknown age first), then the distribution row
    assert [ln.split(" | ")[4] for ln in lines[:4]] == ["–", "0.30", "1.50", "2.70"]
    assert lines[4].split(" | ")[2:] == ["4", "19.50", "20.02", "20.60", "21.25", "22.00 |"]
    assert "kill-primary" not in text
    assert report.cut_table(RUNS) == ""
    assert text in report.markdown_table(RUNS + cuts)


def test_alert_table_counts_runs_and_takes_medians_leaving_out_alerts_firing_before_the_fault():
    runs = []
    for pending, firing in [(9.2, None), (12.2, 40.0), (10.0, 38.0)]:
        r = run("primary-poweroff", "halite", 21.0, 0.1, 50.0, timeline=False)
        r["alerts"] = {"PatroniNoLeader": {"pending_s": pending, "firing_s": firing},
                       "PatroniLeaderChanged": {"pending_s": None, "firing_s": 0.1}}
        runs.append(r)
    text = report.alert_table(RUNS + runs)
    rows = {ln.split(" | ")[2]: ln.split(" | ")[3:] for ln in text.splitlines() if ln.startswith("| primary-poweroff")}
    assert rows["PatroniNoLeader"] == ["3/3", "10.00", "2/3", "39.00 |"]
    # firing at the first poll (0.1 s): it fired before the fault, not because of it
    assert rows["PatroniLeaderChanged"] == ["0/3", "–", "0/3", "– |"]
    assert report.alert_table(RUNS) == ""
    assert text in report.markdown_table(RUNS + runs)
