"""etc/salt/orchstates/halite_ssh.py: an orchestration step over salt-ssh that keeps the
function's return, or its own error message (salt.function loses it in KeyError 'ret')."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "etc/salt/orchstates"))
import halite_ssh  # noqa: E402

#: What salt-ssh answers for a host where the function raised (seen in the lab).
FAILED = {"stdout": "", "stderr": "Error running 'pgbackrest.drill': restore drill: pgbackrest restore (stanza "
                                  "halite) failed (exit 29): ERROR: [029]: lz4 error",
          "retcode": 1, "parsed": None, "_error": "The command resulted in a non-zero exit code"}


@pytest.fixture()
def step(monkeypatch):
    calls = []

    def install(answer, test=False):
        def cmd(tgt, fun, **kw):
            calls.append((tgt, fun, kw))
            return answer
        monkeypatch.setattr(halite_ssh, "__salt__", {"saltutil.cmd": cmd}, raising=False)
        monkeypatch.setattr(halite_ssh, "__opts__", {"test": test}, raising=False)
        return calls
    return install


def test_returns_are_kept_per_host(step):
    calls = step({"db-01": {"return": {"skipped": "a replica"}, "retcode": 0},
                  "db-02": {"ret": {"lsn": "0/3000090"}, "retcode": 0}})
    ret = halite_ssh.function("pgbackrest.restore_point", "db-01,db-02", tgt_type="list", kwarg={"name": "rp"})
    assert ret["result"] is True
    assert ret["changes"] == {"ret": {"db-01": {"skipped": "a replica"}, "db-02": {"lsn": "0/3000090"}}}
    assert calls == [("db-01,db-02", "pgbackrest.restore_point",
                      {"arg": [], "kwarg": {"name": "rp"}, "tgt_type": "list", "ssh": True})]


def test_a_function_error_is_reported_with_its_own_message(step):
    step({"backup-01": FAILED})
    ret = halite_ssh.function("pgbackrest.drill", "backup-01")
    assert ret["result"] is False
    assert ret["comment"] == ("pgbackrest.drill failed on backup-01: restore drill: pgbackrest restore (stanza "
                              "halite) failed (exit 29): ERROR: [029]: lz4 error")
    assert ret["changes"]["ret"]["backup-01"]["error"].startswith("restore drill: ")


def test_one_failed_host_fails_the_step_and_no_answer_too(step):
    step({"db-01": {"return": True, "retcode": 0}, "db-02": FAILED})
    assert halite_ssh.function("pitr.stop", "db-01,db-02", tgt_type="list")["result"] is False
    step({})
    ret = halite_ssh.function("pitr.stop", "db-01")
    assert ret["result"] is False and "no host of db-01 answered" in ret["comment"]


def test_a_dry_run_calls_nothing(step):
    calls = step({"db-01": {"return": True}}, test=True)
    ret = halite_ssh.function("pitr.wipe", "db-01", kwarg={"confirm": True})
    assert ret["result"] is None and calls == []
