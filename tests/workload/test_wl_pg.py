"""The workload against a real (throwaway) PostgreSQL 15."""
from __future__ import annotations

import time

import psycopg

from halite.workload import ID_STRIDE, Workload


def _wl(pg, table: str, **kw) -> Workload:
    kw.setdefault("writers", 2)
    kw.setdefault("readers", 1)
    kw.setdefault("max_seconds", 30)
    wl = Workload(pg.dsn, pg.dsn, table=table, **kw)
    wl.setup(truncate=True)
    return wl


def test_steady_run_no_loss(ensure_up):
    pg = ensure_up
    wl = _wl(pg, "halite_probe")
    wl.start()
    time.sleep(3)
    wl.stop()
    assert not wl.running()
    res = wl.analyze()
    assert res["acked_writes"] > 0
    assert res["lost_writes"] == 0 and res["lost_ids"] == []
    assert res["dual_primary"] is False and res["dual_primary_evidence"] == []
    assert res["successful_reads"] > 0
    assert [s for s, _, _ in res["servers_seen"]] == ["127.0.0.1"]
    assert res["timelines_seen"] == [1]
    assert res["verify_server"] == "127.0.0.1"
    assert res["write_unavailable_s"] < 1.0
    assert res["unknown_outcome"] == 0 and res["write_errors"] == 0
    # ids are writer * 10**9 + seq and unique
    ids = [a.id for a in wl.acks]
    assert len(ids) == len(set(ids))
    assert {i // ID_STRIDE for i in ids} == {0, 1}
    tl = res["timeline"]
    assert tl["bucket_s"] == 0.1 and len(tl["t"]) == len(tl["writes"]) == len(tl["reads"])
    assert 25 <= len(tl["t"]) <= 40
    assert 0 < sum(tl["writes"]) <= res["acked_writes"]
    with psycopg.connect(pg.dsn) as c:
        n = c.execute("SELECT count(*) FROM halite_probe").fetchone()[0]
    assert n >= res["acked_writes"]


def test_setup_continues_sequence(ensure_up):
    pg = ensure_up
    wl = _wl(pg, "halite_probe_seq", writers=1, readers=0)
    wl.start(); time.sleep(0.3); wl.stop()
    top = max(a.id for a in wl.acks)
    wl2 = Workload(pg.dsn, pg.dsn, writers=1, readers=0, table="halite_probe_seq")
    wl2.setup()  # no truncate: continue after the highest seq
    wl2.start(); time.sleep(0.3); wl2.stop()
    assert min(a.id for a in wl2.acks) > top
    res = wl2.analyze()
    assert res["lost_writes"] == 0 and res["write_errors"] == 0


def test_outage_measured_without_loss(ensure_up):
    pg = ensure_up
    wl = _wl(pg, "halite_probe_outage")
    wl.start()
    try:
        time.sleep(1.0)
        fault = wl.mark_fault()
        pg.stop("fast")
        time.sleep(2.0)
        pg.start()
        time.sleep(1.5)
    finally:
        wl.stop()
    res = wl.analyze()  # the fault time comes from mark_fault
    assert res["fault_at_s"] is not None and abs(res["fault_at_s"] - (fault - wl.t_start)) < 1e-3
    assert 1.5 <= res["write_unavailable_s"] < 10, res
    assert 1.5 <= res["read_unavailable_s"] < 10, res
    gap_from, gap_to = res["write_gap"]
    assert gap_from <= 0.5 and gap_to >= 1.5  # seconds relative to the fault
    assert res["lost_writes"] == 0, res["lost_ids"]
    assert res["dual_primary"] is False
    assert res["acked_writes"] > 0 and res["write_errors"] + res["connect_errors"] > 0
    # unknown outcomes are not acks; those that did commit are told apart
    assert res["unknown_committed"] <= res["unknown_outcome"]
    # writes came back after the restart
    tl = res["timeline"]
    assert sum(w for t, w in zip(tl["t"], tl["writes"]) if t > 2.5) > 0
    # same result with the fault given explicitly, as monotonic or as wall-clock time
    res2 = wl.analyze(fault_time=fault, verify=False)
    assert res2["write_unavailable_s"] == res["write_unavailable_s"]
    wall = wl.wall_start + (fault - wl.t_start)
    res3 = wl.analyze(fault_time=wall, verify=False)
    assert abs(res3["write_unavailable_s"] - res["write_unavailable_s"]) < 0.01


def test_deleted_acked_rows_are_reported_lost(ensure_up):
    pg = ensure_up
    wl = _wl(pg, "halite_probe_loss")
    wl.start()
    time.sleep(1.0)
    wl.stop()
    acked = sorted(a.id for a in wl.acks)
    assert len(acked) >= 10
    victims = sorted(acked[i] for i in (0, 3, len(acked) // 2, -2, -1))
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute("DELETE FROM halite_probe_loss WHERE id = ANY(%s)", (victims,))
    res = wl.analyze(verify_dsn=pg.dsn)
    assert res["lost_writes"] == len(victims)
    assert res["lost_ids"] == victims
    res = wl.analyze(verify_dsn=pg.dsn, max_listed=2)
    assert res["lost_writes"] == len(victims) and res["lost_ids"] == victims[:2]


def test_unreachable_target_stops_by_itself():
    # nothing listens on port 1: every connect fails at once; max_seconds ends the run
    wl = Workload("host=127.0.0.1 port=1 user=x dbname=x", None, writers=2, readers=1,
                  max_seconds=1.0)
    t0 = time.monotonic()
    wl.start()
    deadline = t0 + 5
    while wl.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not wl.running()
    assert time.monotonic() - t0 < 2.5
    res = wl.analyze(verify=False)
    assert res["acked_writes"] == 0 and res["lost_writes"] is None
    assert res["connect_errors"] > 0
    assert 0.9 <= res["write_unavailable_s"] <= 1.1
    assert 0.9 <= res["run_s"] <= 1.1
