"""Helpers for tests that start real servers on this machine's loopback (Prometheus, nginx,
the alert recorder...): a free port, and stopping a process by its PID."""
from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL after ``timeout`` seconds) and reap it."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
