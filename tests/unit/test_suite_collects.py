"""The lab tests can be collected on a fresh clone: nothing they read when pytest imports
them (the topology, generated secrets) may depend on material the lab's deploy makes
(halite's CA, host certificates). CI runs ``make test`` on a clone where none exists yet;
the CA is read when a test runs."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lab_tests_collect_without_generated_material(tmp_path):
    env = dict(os.environ, HALITE_STATE_DIR=str(tmp_path / "empty"))
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/lab"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " collected" in res.stdout.splitlines()[-1], res.stdout[-500:]
    # no CA was made by collecting (only the lab's deploy makes one)
    assert not (tmp_path / "empty" / "lab" / "ca.crt").exists()
