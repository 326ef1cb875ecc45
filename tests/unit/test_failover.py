"""halite.failover's parts that need no lab: the lock watch and the random cut offset."""
from __future__ import annotations

import subprocess
import time

from halite import failover

JOURNAL = [
    "1764538800.100000 db-01 patroni[81]: 2026-11-30 21:40:00,099 INFO: no action. I am (db-01), the leader with the lock\n",
    "1764538801.500000 db-01 patroni[81]: 2026-11-30 21:40:01,499 INFO: Lock owner: db-01; I am db-01\n",
    "1764538803.120000 db-01 patroni[81]: 2026-11-30 21:40:03,119 INFO: no action. I am (db-01), the leader with the lock\n",
    "garbage the leader with the lock\n",
]


def test_parse_keeps_the_renewals_only():
    assert failover.LockWatch.parse(JOURNAL) == [1764538800.1, 1764538803.12]


def _fed(lines):
    """A LockWatch whose follower is a real process printing ``lines`` and then ending."""
    watch = failover.LockWatch("db-01")
    watch._proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watch._proc.stdin.write("".join(lines))
    watch._proc.stdin.close()
    return watch


def test_age_at_is_the_time_since_the_last_renewal_before_the_fault():
    assert _fed(JOURNAL).age_at(1764538804.0) == 0.88
    # a renewal after the fault (written before the follower saw the cut) does not count
    assert _fed(JOURNAL).age_at(1764538802.0) == 1.9


def test_age_at_without_a_renewal_is_none_and_a_follower_that_hangs_is_stopped():
    assert _fed(JOURNAL[1:2]).age_at(1764538804.0) is None
    watch = failover.LockWatch("db-01")
    watch._proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    assert watch.age_at(time.time(), settle=0.3) is None
    assert time.monotonic() - t0 < 10 and watch._proc.poll() is not None

