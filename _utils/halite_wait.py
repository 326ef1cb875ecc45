"""
The wait loop shared by halite's health gates (``patroni_cluster.healthy``,
``etcd_health.healthy``). The states reach it as ``__utils__["halite_wait.poll"]``.
"""
from __future__ import annotations

from salt.exceptions import CommandExecutionError

__virtualname__ = "halite_wait"


def __virtual__():
    return __virtualname__


def poll(look, timeout: float, interval: float, clock):
    """Call ``look()`` until it reports success or ``timeout`` seconds have passed.

    :param look: a function returning ``(done, detail)``. A
        :class:`CommandExecutionError` it raises counts as "not yet", with its
        message as the detail (a service that does not answer yet is not a failure).
    :param timeout: seconds; 0 looks exactly once (what a dry run does).
    :param interval: seconds between two looks.
    :param clock: the ``time`` module (or a stand-in with ``monotonic`` and ``sleep``).
    :returns: ``(done, detail, elapsed_seconds)`` from the last look.
    """
    start = clock.monotonic()
    deadline = start + float(timeout)
    detail = "nothing yet"
    while True:
        try:
            done, detail = look()
        except CommandExecutionError as exc:
            done, detail = False, str(exc)
        if done:
            return True, detail, clock.monotonic() - start
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return False, detail, clock.monotonic() - start
        clock.sleep(min(float(interval), remaining))
