"""Shared fixtures. The lab is built once per test session (``halite lab up``
then ``salt-run state.orchestrate orch.deploy``) and every lab test runs
against it; it is removed at the end unless HALITE_KEEP_LAB=1."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labkit import BIN, run  # noqa: E402

from halite.orchestrate import failed_states  # noqa: E402


@pytest.fixture(scope="session")
def lab():
    if os.environ.get("HALITE_REUSE_LAB") == "1":
        # development only: run some lab tests again against the lab that is up
        # (tests that need the site on the old server will fail after a move)
        yield
        return
    # Start from new hosts: a lab left up by `make demo` has already moved the
    # site onto the cluster, and the migration tests need it on the old server.
    res = run([BIN / "halite", "lab", "down"], timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    res = run([BIN / "halite", "lab", "up"], timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    yield
    if os.environ.get("HALITE_KEEP_LAB") != "1":
        run([BIN / "halite", "lab", "down"], timeout=600)


@pytest.fixture(scope="session")
def deployed(lab):
    """The whole stack, laid down by orch.deploy (once per session)."""
    res = run([BIN / "salt-run", "state.orchestrate", "orch.deploy", "--out=json"], timeout=2400)
    if res.returncode != 0:
        try:
            failed = failed_states(json.loads(res.stdout))
        except ValueError:
            failed = ["(no JSON)"]
        # what the failing hosts' systemd says (CI shows only part of the output: this first)
        from halite import config

        known = set(config.load()["topology"]["hosts"])
        hosts = sorted({line.split(": ")[1] for line in failed if line.count(": ") >= 2} & known)
        journals = []
        for host in hosts[:3]:
            j = run([BIN / "halite", "lab", "ssh", host, "sh", "-c",
                     "'systemctl --failed --no-legend; journalctl -p warning -n 30 --no-pager'"], timeout=60)
            journals.append(f"--- {host}:\n{j.stdout[-3000:]}{j.stderr[-500:]}")
        pytest.fail(f"orch.deploy failed (exit {res.returncode}); failed states:\n" + "\n".join(failed)
                    + "\n\n" + "\n".join(journals) + f"\n\nstderr:\n{res.stderr[-2000:]}", pytrace=False)
    return json.loads(res.stdout)
