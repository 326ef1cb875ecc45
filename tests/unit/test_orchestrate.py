"""halite.orchestrate: each step of an orchestration shown as it starts and
ends, Salt's summary after, the exit code, and a quiet end.

Tiny orchestrations run for real, with Salt's own event publisher, in a
configuration of their own under tmp_path: steps that need no host (a
runner, ``test.*`` states, salt-ssh steps whose target matches no host or a
host that refuses the connection)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from halite import cli, orchestrate

REPO = Path(__file__).resolve().parents[2]

ORCHESTRATIONS = {
    # one slow step: its start must be on screen well before its end
    "slow": """
        sleep-a-little:
          salt.runner:
            - name: test.sleep
            - s_time: 3
    """,
    # a salt-ssh step (whose target matches no host) then a local state: a
    # successful run through the same Salt code paths as orch.deploy
    "quiet": """
        state-on-nobody:
          salt.state:
            - tgt: no-such-host
            - ssh: True
            - sls: nothing
            - expect_minions: False

        check-after:
          test.succeed_with_changes:
            - require:
              - salt: state-on-nobody
    """,
    # a host that refuses the connection, then a step that needs it
    "broken": """
        state-on-refusing-host:
          salt.state:
            - tgt: refusing-01
            - ssh: True
            - sls: nothing

        after-it:
          test.succeed_without_changes:
            - require:
              - salt: state-on-refusing-host
    """,
}


@pytest.fixture(scope="module")
def salt_config(tmp_path_factory) -> Path:
    """A Salt master configuration of its own: state tree, empty pillar, a roster of one refusing host."""
    root = tmp_path_factory.mktemp("orch")
    (root / "states" / "orch").mkdir(parents=True)
    (root / "pillar").mkdir()
    for name, sls in ORCHESTRATIONS.items():
        (root / "states" / "orch" / f"{name}.sls").write_text(textwrap.dedent(sls))
    (root / "roster").write_text("refusing-01:\n  host: 127.0.0.1\n  port: 1\n  user: root\n  timeout: 5\n")
    (root / "master").write_text(textwrap.dedent(f"""\
        root_dir: {root}/run
        cachedir: cache
        pki_dir: pki
        sock_dir: sock
        log_file: log/master
        ssh_log_file: log/ssh
        file_roots:
          base: [{root}/states]
        pillar_roots:
          base: [{root}/pillar]
        roster_file: {root}/roster
        known_hosts_file: {root}/known_hosts
        state_output: changes
        state_verbose: False
    """))
    return root


def start(config: Path, mods: str, test: bool = False) -> subprocess.Popen:
    """``halite orch`` on our configuration, in a process of its own (as from the shell)."""
    code = ("import sys; from halite import orchestrate as o; "
            f"sys.exit(o.orchestrate({mods!r}, test={test!r}, opts=o.master_opts({str(config)!r})))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code], cwd=config, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_a_step_is_shown_when_it_starts_and_again_when_it_ends(salt_config):
    proc = start(salt_config, "orch.slow")
    seen = {}
    for line in proc.stdout:
        # a runner step is shown by the runner's name (what Salt's start event carries)
        if "test.sleep  (runner)  started" in line:
            seen["started"] = time.monotonic()
            assert proc.poll() is None, "the start line came only when the run had ended"
        if "test.sleep  (runner)  ok (" in line:
            seen["ended"] = time.monotonic()
            break
    rc, out, err = finish(proc)
    assert set(seen) == {"started", "ended"}, out + err
    assert seen["ended"] - seen["started"] >= 2.5  # the 3 s step ran between the two lines
    assert rc == 0, out + err
    assert "Succeeded: 1" in out  # Salt's summary follows the progress lines


def test_a_successful_run_exits_0_with_no_warning_and_no_traceback(salt_config):
    rc, out, err = finish(start(salt_config, "orch.quiet"))
    assert rc == 0, out + err
    lines = out.splitlines()
    started = next(i for i, line in enumerate(lines) if "state-on-nobody  no-such-host  started" in line)
    ended = next(i for i, line in enumerate(lines) if "state-on-nobody" in line and "ok (" in line)
    local = next(i for i, line in enumerate(lines) if "check-after" in line and "ok (" in line and "1 changed" in line)
    assert started < ended < local
    assert "Succeeded: 2 (changed=1)" in out
    assert out.rstrip().splitlines()[-1].startswith("halite orch orch.quiet: succeeded in ")
    # Salt's own messages stay (salt-ssh logs that no host matched, at ERROR:
    # this test's own target); what must be gone is what every run printed
    for noise in ("WARNING", "unclosed", "Traceback", "Failed to import"):
        assert noise not in err, err


def test_a_failing_step_shows_FAILED_with_the_host_and_the_run_exits_1(salt_config):
    rc, out, err = finish(start(salt_config, "orch.broken"))
    assert rc == 1, out + err
    failed = [line for line in out.splitlines() if "state-on-refusing-host  refusing-01  FAILED: " in line]
    assert failed and "Run failed on minions: refusing-01" in failed[0], out
    assert any("after-it" in line and "not run: One or more requisite failed" in line for line in out.splitlines()), out
    assert "Failed:    2" in out
    assert out.rstrip().splitlines()[-1].startswith("halite orch orch.broken: FAILED in ")


def test_with_test_true_steps_are_shown_and_nothing_runs(salt_config):
    rc, out, err = finish(start(salt_config, "orch.slow", test=True))
    assert rc == 0, out + err
    line = next(line for line in out.splitlines() if "sleep-a-little" in line)
    assert "ok (0.0s, test: 0 would change)" in line  # the 3 s sleep did not run
    assert "would be executed" in out


# Events as Salt 3008.4 fired them in a run of orch.broken above (recorded).
JID = "20261130035909653009"
ARGS = {"type": "state", "tgt": "nowhere-01", "name": "ping-nowhere",
        "args": {"arg": ["nothing"], "kwarg": {"queue": False, "concurrent": False}, "ret": "", "timeout": None,
                 "tgt_type": "glob", "ssh": True, "expect_minions": True},
        "_stamp": "2026-11-30T03:59:15.077303+00:00"}
PROG_FAILED = {"ret": {"name": "ping-nowhere", "changes": {"out": "highstate", "ret": {"nowhere-01": False}},
                       "comment": "Run failed on minions: nowhere-01\nMinion nowhere-01 did not return a state result.",
                       "result": False, "__sls__": "orch.fail", "__run_num__": 0, "start_time": "03:59:15.053692",
                       "duration": 808.496, "__id__": "ping-nowhere"},
               "len": 2, "_stamp": "2026-11-30T03:59:15.876708+00:00"}
PROG_NOT_RUN = {"ret": {"changes": {}, "result": False, "duration": 0.022, "start_time": "03:59:15.896390",
                        "comment": "One or more requisite failed: orch.fail.ping-nowhere", "__state_ran__": False,
                        "__run_num__": 1, "__sls__": "orch.fail", "__id__": "after-ping", "name": "test.arg"},
                "len": 2, "_stamp": "2026-11-30T03:59:15.905418+00:00"}


def test_decode_reads_a_start_an_end_and_a_step_that_never_ran():
    started = orchestrate.decode(f"salt/run/{JID}/args", ARGS, JID)
    assert (started.kind, started.name, started.targets) == ("started", "ping-nowhere", "nowhere-01")
    ended = orchestrate.decode(f"salt/job/{JID}/prog/vm_master/0", PROG_FAILED, JID)
    assert (ended.kind, ended.id, ended.result, ended.ran) == ("ended", "ping-nowhere", False, True)
    assert ended.duration == pytest.approx(0.808, abs=0.001)
    assert ended.comment == "Run failed on minions: nowhere-01 Minion nowhere-01 did not return a state result."
    never = orchestrate.decode(f"salt/job/{JID}/prog/vm_master/1", PROG_NOT_RUN, JID)
    assert (never.id, never.name, never.ran) == ("after-ping", "test.arg", False)


def test_decode_ignores_events_of_other_jobs():
    assert orchestrate.decode(f"salt/run/{JID}/args", ARGS, "20261130000000000000") is None
    assert orchestrate.decode(f"salt/job/{JID}/ret/db-01", {"return": True}, JID) is None
    assert orchestrate.decode(f"salt/run/{JID}/new", {"fun": "runner.test.arg"}, JID) is None


# Recorded in the lab (halite orch deploy --test, 2026-11-30), the patroni step
# trimmed to the states that would change and a short diff.
LAB_JID = "20261130040747720728"
LAB_ARGS = {"type": "state", "tgt": "app-01", "name": "deploy-haproxy",
            "args": {"arg": ["haproxy,haproxy.roundtrip"], "kwarg": {"test": True, "queue": False, "concurrent": False},
                     "ret": "", "timeout": None, "tgt_type": "list", "ssh": True, "expect_minions": True},
            "_stamp": "2026-11-30T04:10:14.928846+00:00"}
LAB_PROG = {"ret": {"name": "deploy-haproxy", "changes": {}, "comment": "States ran successfully. No changes made to app-01.",
                    "result": True, "__jid__": "20261130041025354161", "__sls__": "orch.deploy", "__run_num__": 4,
                    "start_time": "04:10:14.901956", "duration": 12358.627, "__id__": "deploy-haproxy"},
            "len": 7, "_stamp": "2026-11-30T04:10:27.279823+00:00"}


def _would_change(host_run_num: int) -> dict:
    return {"file_|-patroni-config-file_|-/etc/patroni/patroni.yml_|-managed": {
                "result": None, "changes": {"diff": "@@ -22,28 +22,8 @@ ..."}, "__id__": "patroni-config-file",
                "comment": "The file /etc/patroni/patroni.yml is set to be changed", "__run_num__": host_run_num},
            "service_|-patroni-service-running_|-patroni_|-running": {
                "result": None, "changes": {}, "__id__": "patroni-service-running",
                "comment": "Service is set to be reloaded", "__run_num__": host_run_num + 13}}


LAB_PROG_TEST = {"ret": {"name": "deploy-patroni", "comment": "States ran successfully. Updating db-03, db-01, db-02.",
                         "result": None, "__jid__": "20261130040950797622", "__sls__": "orch.deploy", "__run_num__": 2,
                         "start_time": "04:09:18.555622", "duration": 40981.864, "__id__": "deploy-patroni",
                         "changes": {"out": "highstate", "ret": {h: _would_change(11) for h in ("db-03", "db-01", "db-02")}}},
                 "len": 7}


def test_lab_events_of_orch_deploy_give_its_progress_lines():
    now = [0.0]
    out = io.StringIO()
    progress = orchestrate.Progress(out, clock=lambda: now[0])
    now[0] = 147.2
    progress.show(orchestrate.decode(f"salt/run/{LAB_JID}/args", LAB_ARGS, LAB_JID))
    now[0] = 159.6
    progress.show(orchestrate.decode(f"salt/job/{LAB_JID}/prog/vm_master/4", LAB_PROG, LAB_JID))
    progress.show(orchestrate.decode(f"salt/job/{LAB_JID}/prog/vm_master/2", LAB_PROG_TEST, LAB_JID))
    assert out.getvalue().splitlines() == [
        "[ 147.2s] deploy-haproxy  app-01  started",
        "[ 159.6s] deploy-haproxy  app-01  ok (12.4s, 0 changed)",
        "[ 159.6s] deploy-patroni  -  ok (41.0s, test: 3 would change)",  # one state per host would change
    ]


def test_a_failed_state_on_a_host_is_named_in_the_failure_line():
    # a salt.state step's result as saltmod.state builds it: per host, per state
    ret = {"name": "deploy-etcd", "__id__": "deploy-etcd", "result": False, "duration": 41200.0,
           "comment": "Run failed on minions: db-02",
           "changes": {"out": "highstate", "ret": {"db-02": {
               "file_|-etcd-config-file_|-/etc/default/etcd_|-managed": {
                   "result": True, "changes": {"diff": "..."}, "comment": "", "__run_num__": 3, "__id__": "etcd-config-file"},
               "service_|-etcd-service-running_|-etcd_|-running": {
                   "result": False, "changes": {}, "comment": "Service etcd failed to start", "__run_num__": 4,
                   "__id__": "etcd-service-running"}}}}}
    step = orchestrate.decode(f"salt/job/{JID}/prog/m/0", {"ret": ret}, JID)
    assert step.comment == "Run failed on minions: db-02 (db-02: etcd-service-running: Service etcd failed to start)"
    assert step.changed == 1


def test_progress_lines_say_step_targets_and_what_happened():
    now = [100.0]
    out = io.StringIO()
    progress = orchestrate.Progress(out, clock=lambda: now[0])
    now[0] = 112.3
    progress.show(orchestrate.Step("started", "deploy-etcd", targets="db-01,db-02,db-03"))
    now[0] = 153.5
    progress.show(orchestrate.Step("ended", "deploy-etcd", "deploy-etcd", result=True, duration=41.2, changed=3))
    progress.show(orchestrate.Step("ended", "deploy-etcd", "deploy-etcd", result=True, duration=41.2, changed=3))
    progress.show(orchestrate.decode(f"salt/job/{JID}/prog/m/1", PROG_NOT_RUN, JID))
    assert out.getvalue().splitlines() == [
        "[  12.3s] deploy-etcd  db-01,db-02,db-03  started",
        "[  53.5s] deploy-etcd  db-01,db-02,db-03  ok (41.2s, 3 changed)",  # once, though the end came twice
        "[  53.5s] after-ping   -  not run: One or more requisite failed: orch.fail.ping-nowhere",
    ]


def test_steps_running_at_once_end_on_their_own_lines():
    """Two parallel steps: the engine's "started in a separate process" events are no ends,
    and each end goes to the step of its name, whichever started last."""
    now = [0.0]
    out = io.StringIO()
    progress = orchestrate.Progress(out, clock=lambda: now[0])
    progress.show(orchestrate.Step("started", "deploy-site-legacy", targets="app-01"))
    started = {"ret": {"name": "deploy-site-legacy", "__id__": "deploy-site-legacy", "result": None,
                       "comment": "Started in a separate process", "changes": {}, "__run_num__": 1}}
    assert orchestrate.decode(f"salt/job/{JID}/prog/m/1", started, JID) is None
    now[0] = 0.1
    progress.show(orchestrate.Step("started", "deploy-etcd", targets="db-01,db-02,db-03"))
    now[0] = 19.2
    progress.show(orchestrate.Step("ended", "deploy-etcd", "deploy-etcd", result=True, duration=19.1, changed=27))
    now[0] = 25.7
    progress.show(orchestrate.Step("ended", "deploy-site-legacy", "deploy-site-legacy", result=True,
                                   duration=25.6, changed=11))
    assert out.getvalue().splitlines() == [
        "[   0.0s] deploy-site-legacy  app-01  started",
        "[   0.1s] deploy-etcd         db-01,db-02,db-03  started",
        "[  19.2s] deploy-etcd         db-01,db-02,db-03  ok (19.1s, 27 changed)",
        "[  25.7s] deploy-site-legacy  app-01  ok (25.6s, 11 changed)",
    ]


PARALLEL_ORCH = """
slow:
  salt.runner:
    - name: test.sleep
    - s_time: 5
    - parallel: True

quick:
  salt.runner:
    - name: test.arg

after-slow:
  salt.runner:
    - name: test.metasyntactic
    - require:
      - salt: slow
"""


def test_a_parallel_step_is_shown_when_it_ends_not_when_it_starts(tmp_path):
    """A real orchestration (runner steps: no host): the parallel step has one end line, not
    one when it starts, and it comes from the end event fired when the engine collects it:
    before the step that requires it starts (without that event it would come only after the
    run, from the results). Only the order of lines is checked, never how long a step took."""
    roots = tmp_path / "roots"
    (roots / "orch").mkdir(parents=True)
    (roots / "orch" / "par.sls").write_text(PARALLEL_ORCH)
    (tmp_path / "master").write_text(yaml.safe_dump({
        "root_dir": str(tmp_path / "run"), "cachedir": "cache", "sock_dir": "sock", "pki_dir": "pki",
        "log_file": "log/master", "file_roots": {"base": [str(roots)]}, "pillar_roots": {"base": []},
        "log_level": "error"}))
    out = io.StringIO()
    rc = orchestrate.orchestrate("orch.par", opts=orchestrate.master_opts(tmp_path), out=out)
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines() if line.startswith("[")]
    assert rc == 0, out.getvalue()
    # runner steps are named by their function
    events = [(line.split()[0], "started" if line.endswith(" started") else "ok" if " ok (" in line else line)
              for line in lines]
    # the parallel step's start is fired from its own process: it may come after the next step's
    started = [name for name, kind in events if kind == "started"]
    assert sorted(started[:2]) == ["test.arg", "test.sleep"] and started[2:] == ["test.metasyntactic"], lines
    assert sorted(name for name, kind in events if kind == "ok") == ["test.arg", "test.metasyntactic", "test.sleep"]
    assert events.index(("test.arg", "started")) < events.index(("test.sleep", "ok")), lines
    assert events.index(("test.sleep", "ok")) < events.index(("test.metasyntactic", "started")), lines


def test_halite_orch_refuses_a_pillar_that_is_not_a_json_object(capsys):
    assert cli.main(["orch", "deploy", "--pillar", "{not json"]) == 2
    assert cli.main(["orch", "deploy", "--pillar", "[1, 2]"]) == 2
    assert "--pillar" in capsys.readouterr().err


def test_failed_states_names_every_failed_state_of_a_failed_orchestration():
    """What the lab's deploy fixture prints first when orch.deploy fails (CI shows only part)."""
    output = {"data": {"vm_master": {
        "salt_|-deploy-base_|-deploy-base_|-state": {
            "__id__": "deploy-base", "__run_num__": 0, "result": True, "comment": "ok",
            "changes": {"out": "highstate", "ret": {"db-01": {"a": {"result": True, "__run_num__": 0}}}}},
        "salt_|-deploy-exporters_|-deploy-exporters_|-state": {
            "__id__": "deploy-exporters", "__run_num__": 1, "result": False,
            "comment": "Run failed on minions: db-01, db-02",
            "changes": {"out": "highstate", "ret": {
                "db-01": {"service_|-pg-exp_|-x_|-running": {"__id__": "pg-exp", "__run_num__": 3, "result": False,
                                                            "comment": "Service x failed\n to start"},
                          "file_|-f_|-f_|-managed": {"__id__": "f", "__run_num__": 1, "result": True}},
                "db-02": "Unable to render the state tree"}}},
        "salt_|-deploy-monitoring_|-deploy-monitoring_|-state": {
            "__id__": "deploy-monitoring", "__run_num__": 2, "result": False,
            "comment": "One or more requisite failed: orch.deploy.deploy-exporters", "changes": {}},
    }}}
    assert orchestrate.failed_states(output) == [
        "deploy-exporters: db-01: pg-exp: Service x failed to start",
        "deploy-exporters: db-02: Unable to render the state tree",
        "deploy-monitoring: One or more requisite failed: orch.deploy.deploy-exporters",
    ]
    output["data"]["vm_master"] = {k: v for k, v in output["data"]["vm_master"].items() if "base" in k}
    assert orchestrate.failed_states(output) == []
