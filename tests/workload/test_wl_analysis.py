"""Pure analysis functions on synthetic acknowledgements (no server)."""
from __future__ import annotations

import math

import pytest

from halite.workload import (Ack, Read, Workload, bucketize, detect_dual_primary,
                             longest_gap, servers_seen)


def ack(t, server, timeline=None, sent=None, ident=0, writer=0):
    return Ack(ident, writer, t, 1_700_000_000 + t, server, timeline,
               t - 0.001 if sent is None else sent)


def test_single_primary_is_fine():
    acks = [ack(i * 0.1, "10.0.0.1", 1) for i in range(20)]
    res = detect_dual_primary(acks)
    assert res == {"dual_primary": False, "count": 0, "evidence": []}


def test_clean_failover_is_not_dual():
    acks = [ack(i * 0.1, "A", 1) for i in range(10)] + [ack(5 + i * 0.1, "B", 2) for i in range(10)]
    assert detect_dual_primary(acks)["dual_primary"] is False


def test_old_primary_ack_after_new_primary_is_dual():
    acks = [ack(1.0, "A", None, ident=1), ack(2.0, "B", None, ident=2),
            ack(2.5, "A", None, sent=2.4, ident=3), ack(3.0, "B", None, ident=4)]
    res = detect_dual_primary(list(reversed(acks)))  # order of input does not matter
    assert res["dual_primary"] is True and res["count"] == 1
    ev = res["evidence"][0]
    assert ev["kind"] == "interleave" and ev["id"] == 3
    assert (ev["old_server"], ev["new_server"]) == ("A", "B")
    assert ev["ack_t"] == 2.5 and ev["new_first_ack_t"] == 2.0
    assert ev["certain"] is True  # sent after B's first ack


def test_overlap_in_flight_is_reported_but_not_certain():
    acks = [ack(1.0, "A"), ack(2.0, "B"), ack(2.01, "A", sent=1.99)]
    res = detect_dual_primary(acks)
    assert res["dual_primary"] is True
    assert res["evidence"][0]["certain"] is False


def test_timeline_separates_epochs_behind_one_address():
    # behind a proxy every server looks like 127.0.0.1: timelines still tell them apart
    acks = [ack(1.0, "127.0.0.1", 1), ack(2.0, "127.0.0.1", 2), ack(2.5, "127.0.0.1", 1)]
    res = detect_dual_primary(acks)
    assert res["dual_primary"] is True
    assert res["evidence"][0]["old_timeline"] == 1 and res["evidence"][0]["new_timeline"] == 2


def test_failback_on_higher_timeline_is_fine():
    acks = [ack(1.0, "A", 1), ack(2.0, "B", 2), ack(3.0, "A", 3), ack(3.1, "A", 3)]
    assert detect_dual_primary(acks)["dual_primary"] is False


def test_timeline_regression_on_new_server_is_dual():
    acks = [ack(1.0, "A", 2), ack(2.0, "B", 1)]
    res = detect_dual_primary(acks)
    assert res["dual_primary"] is True and res["evidence"][0]["kind"] == "timeline"


def test_evidence_is_bounded():
    acks = [ack(0, "A"), ack(1, "B")] + [ack(2 + i * 0.01, "A") for i in range(100)]
    res = detect_dual_primary(acks, limit=5)
    assert res["count"] == 100 and len(res["evidence"]) == 5


def test_longest_gap():
    assert longest_gap([1, 2, 5, 5.5]) == (3, 2, 5)
    assert longest_gap([1, 2], start=0, end=10) == (8, 2, 10)
    assert longest_gap([], start=3, end=4) == (1, 3, 4)
    n, a, b = longest_gap([])
    assert n == 0 and math.isnan(a)


def test_servers_seen_and_buckets():
    acks = [ack(1.0, "A"), ack(1.5, "A"), ack(3.0, "B"), ack(4.0, "B")]
    assert servers_seen(acks, ref=2.0) == [("A", -1.0, -0.5), ("B", 1.0, 2.0)]
    t, c = bucketize([0.05, 0.06, 0.25, 0.99, 1.5], start=0.0, end=1.0, ref=0.5)
    assert len(t) == 10 and t[0] == -0.5 and c[0] == 2 and c[2] == 1 and c[9] == 1
    assert sum(c) == 4  # 1.5 is outside


def _synthetic(fault_gap=(4.0, 6.5)):
    wl = Workload("host=127.0.0.1 port=1", None, writers=1, readers=1)
    wl.t_start, wl.wall_start, wl.t_stop = 100.0, 1_700_000_000.0, 110.0
    ts = [100.0 + i * 0.1 for i in range(101)]
    ts = [t for t in ts if not (100 + fault_gap[0] < t < 100 + fault_gap[1] - 1e-9)]
    wl.acks = [Ack(i, 0, t, 0.0, "A", 1, t - 0.001) for i, t in enumerate(ts)]
    wl.reads = [Read(0, t + 0.05, 0.0, "A", 0, None, False) for t in ts]
    return wl


def test_analyze_unavailability_definition():
    wl = _synthetic()
    res = wl.analyze(fault_time=104.05, verify=False)
    # last ack at or before the fault: 104.0; next ack: 106.5
    assert res["write_unavailable_s"] == pytest.approx(2.5, abs=1e-6)
    assert res["write_gap"] == pytest.approx([-0.05, 2.45], abs=1e-4)
    assert res["read_unavailable_s"] == pytest.approx(2.5, abs=1e-6)
    assert res["servers_seen"] == [("A", pytest.approx(-4.05), pytest.approx(5.95))]
    tl = res["timeline"]
    assert tl["t"][0] == pytest.approx(-4.05) and len(tl["t"]) == 100
    # the same fault given as wall-clock time
    res2 = wl.analyze(fault_time=1_700_000_004.05, verify=False)
    assert res2["write_unavailable_s"] == pytest.approx(2.5, abs=1e-6)
    # a gap wholly before the fault does not count
    res3 = wl.analyze(fault_time=107.0, verify=False)
    assert res3["write_unavailable_s"] == pytest.approx(0.1, abs=1e-6)
    # no fault: longest gap over the run
    assert wl.analyze(verify=False)["write_unavailable_s"] == pytest.approx(2.5, abs=1e-6)
    # writes never came back: the gap runs to the end of the window
    wl.acks = [a for a in wl.acks if a.t <= 104.0]
    assert wl.analyze(fault_time=104.05, verify=False)["write_unavailable_s"] == pytest.approx(6.0)
    assert wl.analyze(fault_time=104.05, window_s=3, verify=False)[
        "write_unavailable_s"] == pytest.approx(3.05)


def test_table_name_is_checked():
    with pytest.raises(ValueError):
        Workload("host=x", table="x; drop table y")
