"""Run a Salt orchestration and show each step while it runs: ``halite orch NAME``.

``salt-run state.orchestrate`` prints nothing until the whole orchestration
has ended, which for ``orch.deploy`` is minutes. Salt announces every step on
its event bus, but without a salt-master there is no bus. So this module runs
the orchestration in-process the way Salt's runner does (a ``MasterMinion``
calling ``state.sls`` with an orchestration jid), and:

* starts Salt's own event publisher (what a salt-master runs) in a private
  ``sock_dir``, follows it (:class:`Follower`) and prints a line when a step
  starts and when it ends (:class:`Progress`):

  - ``salt/run/<jid>/args``: fired by ``salt.state``/``salt.function``/
    ``salt.runner`` steps just before they run (name, target);
  - ``salt/job/<jid>/prog/<id>/<n>``: fired by the state engine when a step
    has ended, with its result (``state_events``, see :func:`run`); for a step
    run in parallel (``parallel: True``) the engine fires it when the step
    starts in its own process, and the end is fired here
    (:func:`_announcing_parallel_ends`);

* closes what it opens, so a successful run ends without the ``unclosed
  MasterMinion``/``MasterEvent`` warnings and the ``highstate_return``
  traceback that ``salt-run`` prints (:func:`run`, :func:`_fire_args`,
  :func:`_destroy`, :func:`event_bus`).

The final summary is Salt's ``highstate`` output, as ``salt-run`` prints it.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TextIO

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "etc" / "salt"


class Step(NamedTuple):
    """One event of an orchestration, as a progress line needs it."""

    kind: str  # "started" or "ended"
    name: str  # the step's name: its ID unless ``name:`` is set (the function of a salt.function step)
    id: str = ""  # ended: the step's ID
    targets: str = ""  # started: what the step targets, as written (``db-01,db-02``, ``*``)
    result: bool | None = None  # ended: True, False, or None (test=True: would change)
    duration: float = 0.0  # ended: seconds, as the state engine measured it
    changed: int = 0  # ended: states changed (salt.state, over all hosts), else 1 if it reported changes
    comment: str = ""  # ended: why it failed
    ran: bool = True  # ended: False when it never started (a requisite failed)


def _failures(changes: dict) -> list[str]:
    """``host: state-id: comment`` of every failed state in a ``salt.state`` step's changes,
    hosts in order, each host's states in the order they ran."""
    per_host = changes.get("ret") if isinstance(changes, dict) else None
    if not isinstance(per_host, dict):
        return []
    out = []
    for host, states in sorted(per_host.items()):
        if isinstance(states, str):  # an error in place of the host's state results
            out.append(f"{host}: {states}")
            continue
        if not isinstance(states, dict):
            continue
        for key, ret in sorted(((k, v) for k, v in states.items() if isinstance(v, dict)),
                               key=lambda kv: kv[1].get("__run_num__", 0)):
            if ret.get("result") is False:
                state_id = ret.get("__id__") or (key.split("_|-")[1] if "_|-" in key else key)
                out.append(f"{host}: {state_id}: {' '.join(str(ret.get('comment', '')).split())}")
    return out


def _first_failure(changes: dict) -> str:
    """``host: state-id: comment`` of the first failed state in a ``salt.state`` step's changes."""
    failures = _failures(changes)
    return failures[0] if failures else ""


def failed_states(output: dict) -> list[str]:
    """``step: host: state-id: comment`` of every failed state in ``salt-run --out=json`` output
    (``step: comment`` for a failed step without host results).

    What a failed orchestration's reader needs first (the whole JSON is thousands of lines).

    :param output: ``salt-run state.orchestrate NAME --out=json`` parsed
    """
    lines = []
    for steps in (output.get("data") or {}).values():
        if not isinstance(steps, dict):
            lines.append(str(steps))
            continue
        for step in sorted((s for s in steps.values() if isinstance(s, dict)),
                           key=lambda s: s.get("__run_num__", 0)):
            if step.get("result") is not False:
                continue
            found = _failures(step.get("changes") or {})
            lines += [f"{step.get('__id__')}: {line}" for line in found] or [
                f"{step.get('__id__')}: {' '.join(str(step.get('comment', '')).split())}"]
    return lines


def _changed(changes: dict) -> int:
    """How many states changed in a step (summed over hosts for a ``salt.state`` step)."""
    if not changes:
        return 0
    if not isinstance(changes, dict):
        return 1
    per_host = changes.get("ret")
    if changes.get("out") == "highstate" and isinstance(per_host, dict):
        return sum(1 for states in per_host.values() if isinstance(states, dict)
                   for ret in states.values() if isinstance(ret, dict) and ret.get("changes"))
    return 1


#: the comment the state engine gives a step it has just started in its own process
#: (salt/state.py, State.call_parallel and State.reconcile_procs in 3008.4)
PARALLEL_STARTED = ("Started in a separate process",
                    "Waiting to be started in a separate process, max_parallel hit")


def decode(tag: str, data: dict, jid: str) -> Step | None:
    """The step event that Salt event (``tag``, ``data``) of orchestration ``jid`` is, or None.

    :param tag: the event's tag: ``salt/run/<jid>/args`` (a step starts) or
        ``salt/job/<jid>/prog/<id>/<n>`` (a step has ended)
    :param data: the event's data
    :param jid: the orchestration's jid; events of other jobs give None
    """
    if tag == f"salt/run/{jid}/args":
        targets = data.get("tgt", "")
        if isinstance(targets, (list, tuple)):
            targets = ",".join(map(str, targets))
        if data.get("type") == "runner":
            targets = "(runner)"
        return Step("started", str(data.get("name", "?")), targets=str(targets))
    if tag.startswith(f"salt/job/{jid}/prog/"):
        ret = data.get("ret", {})
        comment = " ".join(str(ret.get("comment", "")).split())
        result = ret.get("result")
        if result is None and comment in PARALLEL_STARTED:
            return None  # a parallel step has started (its args event said so), not ended
        if result is False:
            detail = " ".join(_first_failure(ret.get("changes") or {}).split())
            if detail and detail not in comment:
                comment = f"{comment} ({detail})" if comment else detail
        return Step("ended", str(ret.get("name", "?")), str(ret.get("__id__") or ret.get("name", "?")),
                    result=result, duration=float(ret.get("duration", 0.0)) / 1000.0,
                    changed=_changed(ret.get("changes") or {}), comment=comment,
                    ran=not comment.startswith("One or more requisite failed"))
    return None


class Progress:
    """Prints a line when a step starts and when it ends.

    ``[  12.3s] deploy-etcd  db-01,db-02,db-03  started``, then
    ``ok (41.2s, 3 changed)``, ``FAILED: <comment>`` or ``not run: <why>``.
    Steps run in parallel (``parallel: True``) can be running at once: an end
    event belongs to the running step of the same name that started first; a
    step that never started (a requisite failed) is shown by its ID.
    """

    def __init__(self, out: TextIO = sys.stdout, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.clock = clock
        self.t0 = clock()
        self.running: list[Step] = []  # steps that have started and not ended, oldest first
        self.ended: set[str] = set()  # IDs
        self.width = 0

    def _print(self, name: str, targets: str, what: str) -> None:
        self.width = max(self.width, len(name))
        print(f"[{self.clock() - self.t0:6.1f}s] {name:<{self.width}}  {targets or '-'}  {what}",
              file=self.out, flush=True)

    def show(self, step: Step | None) -> None:
        if step is None:
            return
        if step.kind == "started":
            self.running.append(step)
            self._print(step.name, step.targets, "started")
            return
        if step.id in self.ended:
            return
        self.ended.add(step.id)
        name, targets = step.id, ""
        started = next((s for s in self.running if s.name == step.name), None)
        if started is not None:
            name, targets = step.name, started.targets
            self.running.remove(started)
        if not step.ran:
            what = f"not run: {step.comment}"
        elif step.result is False:
            what = f"FAILED: {step.comment[:500]}"
        elif step.result is None:
            what = f"ok ({step.duration:.1f}s, test: {step.changed} would change)"
        else:
            what = f"ok ({step.duration:.1f}s, {step.changed} changed)"
        self._print(name, targets, what)


def master_opts(config_dir: Path = CONFIG_DIR) -> dict:
    """Salt's master configuration as ``salt-run`` reads it through the Saltfile.

    Relative paths in it (``root_dir: .salt-run``) are relative to the
    current directory, as for ``salt-run``: run from the repository root.
    """
    import salt.config

    return salt.config.master_config(str(Path(config_dir) / "master"))


def _setup_logging(opts: dict) -> None:
    """Salt's logging as ``salt-run`` sets it up: warnings on the console, the rest in its log file."""
    import salt._logging

    with contextlib.suppress(RuntimeError):  # already frozen (a second run in one process)
        salt._logging.set_logging_options_dict(opts)
    salt._logging.setup_logging()


def _publish(opts: dict) -> None:
    """The event publisher a salt-master runs for its ``sock_dir`` (child process)."""
    import salt.transport

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = salt.transport.ipc_publish_server("master", opts)
    server.publish_daemon(server.publish_payload)


@contextlib.contextmanager
def event_bus(opts: dict, timeout: float = 10.0) -> Iterator[dict]:
    """A master event bus of our own for the time of the block; yields ``opts`` pointing at it.

    Salt's event publisher (what a salt-master runs) is started in a child
    process, in a new private ``sock_dir``. Only the orchestration run with
    the yielded options fires there. salt-ssh reads ``sock_dir`` from the
    configuration file, finds no bus there and fires nothing: its ``SSH``
    object makes an event when ``master_event_pull.ipc`` exists and closes it
    only in ``SSH.run()``, never after ``run_iter()`` as orchestration steps
    use it (salt/client/ssh/__init__.py, lines 341 and 1115 in 3008.4), which
    would warn ``unclosed MasterEvent`` once per step.
    """
    sock_dir = tempfile.mkdtemp(prefix="halite-orch-")
    pull = os.path.join(sock_dir, "master_event_pull.ipc")
    bus_opts = dict(opts, sock_dir=sock_dir)
    proc = multiprocessing.get_context("fork").Process(target=_publish, args=(bus_opts,), name="halite-event-bus", daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(pull):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Salt's event publisher did not start in {sock_dir}")
            time.sleep(0.05)
        yield bus_opts
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        shutil.rmtree(sock_dir, ignore_errors=True)


class Follower(threading.Thread):
    """Follows the master event bus and hands every step of one orchestration to ``show``."""

    def __init__(self, opts: dict, jid: str, show: Callable[[Step], None]):
        super().__init__(name="halite-orch-follower", daemon=True)
        self.opts, self.jid, self.show = opts, jid, show
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import salt.utils.event

        try:
            with salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=True) as bus:
                self.ready.set()
                while not self.stop.is_set():
                    event = bus.get_event(wait=0.2, full=True)
                    if not event:
                        continue
                    step = decode(event.get("tag", ""), event.get("data") or {}, self.jid)
                    if step is not None:
                        self.show(step)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller, never lost in the thread
            self.error = exc
            self.ready.set()


class Outcome(NamedTuple):
    """What one orchestration returned."""

    minion_id: str
    running: dict | list  # the state results by state key, or a list of render errors

    def succeeded(self) -> bool:
        import salt.utils.state

        return isinstance(self.running, dict) and bool(salt.utils.state.check_result({self.minion_id: self.running}))


def _fire_args(opts: dict, jid: str, tag_data: dict, prefix: str = "") -> None:
    """``salt.utils.event.fire_args`` that closes the event it opens.

    Every ``salt.state``/``salt.function``/``salt.runner`` step calls Salt's
    ``fire_args`` (salt/utils/event.py, line 192 in 3008.4), which makes a
    ``MasterEvent`` and never destroys it: when it is collected, Salt warns
    ``unclosed MasterEvent`` and ``unclosed SyncWrapper for
    _TCPPubServerPublisher`` (its pusher). Same event, same tag; only the
    ``with`` is new.
    """
    import logging

    import salt.utils.event

    tag = salt.utils.event.tagify([jid, "args"], prefix)
    try:
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as event:
            event.fire_event(tag_data, tag=tag)
    except Exception as exc:  # noqa: BLE001 - as Salt's: never hold up the orchestration
        logging.getLogger("salt.utils.event").warning("Failed to fire args event %s with data %s: %s", tag, tag_data, exc)


@contextlib.contextmanager
def _announcing_parallel_ends(jid: str) -> Iterator[None]:
    """Fire a step's end event when a step run in parallel has ended, for the time of the block.

    The state engine fires ``salt/job/<jid>/prog/...`` for a ``parallel: True`` step when it
    starts the step's process (result None, :data:`PARALLEL_STARTED`), and nothing when the
    process ends: ``State.reconcile_procs`` (salt/state.py in 3008.4) reads the step's result
    into ``running`` and forgets the process. Here ``reconcile_procs`` also fires that
    result, with the tag the engine gives a step that has ended.
    """
    import logging

    import salt.state
    import salt.utils.event

    plain = salt.state.State.reconcile_procs

    def reconcile_procs(self, running: dict) -> bool:
        before = set(self.procs)
        done = plain(self, running)
        for tag in sorted(before - set(self.procs)):
            ret = running.get(tag)
            if not isinstance(ret, dict):
                continue
            event_tag = f"salt/job/{jid}/prog/{self.opts['id']}/{ret.get('__run_num__', 0)}"
            try:
                with salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=False) as event:
                    event.fire_event({"ret": ret}, tag=event_tag)
            except Exception as exc:  # noqa: BLE001 - progress only: never hold up the orchestration
                logging.getLogger(__name__).warning("Failed to fire %s: %s", event_tag, exc)
        return done

    salt.state.State.reconcile_procs = reconcile_procs
    try:
        yield
    finally:
        salt.state.State.reconcile_procs = plain


@contextlib.contextmanager
def _closing_fire_args() -> Iterator[None]:
    """Salt's ``fire_args`` replaced by :func:`_fire_args` for the time of the block."""
    import salt.utils.event

    leaking = salt.utils.event.fire_args
    salt.utils.event.fire_args = _fire_args
    try:
        yield
    finally:
        salt.utils.event.fire_args = leaking


def _destroy(minion: Any) -> None:
    """Destroy a ``MasterMinion`` so that its finalizer sees it destroyed.

    ``MasterMinion.destroy()`` leaves ``functions`` and ``utils`` as ``{}``,
    but its ``__del__`` (salt/minion.py, lines 1443-1447 in 3008.4) counts it
    as torn down only when they are ``None``: without this, even a destroyed
    ``MasterMinion`` warns ``unclosed MasterMinion`` and is destroyed again at
    interpreter exit.
    """
    minion.destroy()
    minion.returners = minion.functions = minion.utils = None


def run(opts: dict, mods: str, jid: str, pillar: dict | None = None, test: bool = False) -> Outcome:
    """Run orchestration ``mods`` as ``salt-run state.orchestrate`` does, closing what it opens.

    Salt's runner (salt/runners/state.py, ``orchestrate``) makes a
    ``MasterMinion`` and never destroys it. At interpreter exit its
    ``__del__`` warns ``unclosed MasterMinion`` and calls ``destroy()``,
    which walks every returner module of the lazy loader; importing one then
    (``highstate_return``) fails because ``sys.path`` is already ``None``:
    the ``Failed to import returner highstate_return`` traceback. Here the
    ``MasterMinion`` is made without returners, which ``state.sls`` does not
    use (the state engine loads its own modules), and destroyed before
    returning (:func:`_destroy`).

    :param opts: master options (:func:`master_opts`)
    :param mods: the orchestration SLS, e.g. ``orch.deploy``
    :param jid: the orchestration's jid (events carry it)
    :param pillar: pillar override, as ``salt-run ... pillar='{...}'``
    :param test: dry run (``test=True``)
    :returns: the state results of the orchestration
    """
    import salt.minion

    # The state engine fires a step's result (salt/job/<jid>/prog/...) only
    # with state_events on and "local" off (salt/state.py, State.event); a
    # master's defaults set local: True, so salt-run never fires them. "local"
    # off also lets the engine refresh modules after a step that changed a
    # module file (State.module_refresh): orchestration steps change none.
    opts = dict(opts, file_client="local", state_events=True, local=False)
    minion = salt.minion.MasterMinion(opts, returners=False)
    try:
        with _closing_fire_args(), _announcing_parallel_ends(jid):
            running = minion.functions["state.sls"](
                mods, test or None, None, pillar=pillar, saltenv="base", pillarenv=opts.get("pillarenv"),
                __pub_jid=jid, orchestration_jid=jid)
        return Outcome(minion.opts["id"], running)
    finally:
        _destroy(minion)


def orchestrate(mods: str, pillar: dict | None = None, test: bool = False, opts: dict | None = None,
                out: TextIO = sys.stdout) -> int:
    """``halite orch``: run ``mods`` showing each step live, then Salt's summary.

    :param mods: the orchestration SLS, e.g. ``orch.deploy``
    :param pillar: pillar override
    :param test: dry run (``test=True``)
    :param opts: master options (default: :func:`master_opts`, from the current directory)
    :param out: where progress lines go (Salt's summary goes to stdout)
    :returns: the exit code: 0 when every step succeeded, 1 otherwise
    """
    import salt.output
    import salt.utils.jid

    opts = opts if opts is not None else master_opts()
    _setup_logging(opts)
    # runner steps write a job file there, and Salt does not create it
    os.makedirs(os.path.join(opts["cachedir"], "proc"), exist_ok=True)
    jid = salt.utils.jid.gen_jid(opts)
    progress = Progress(out)
    print(f"halite orch {mods}{' test=True' if test else ''} (jid {jid})", file=out, flush=True)
    with event_bus(opts) as opts:
        follower = Follower(opts, jid, progress.show)
        follower.start()
        follower.ready.wait(10)
        try:
            outcome = run(opts, mods, jid, pillar, test)
            # the last step's end event left before run() returned: let it arrive
            deadline = time.monotonic() + 2
            while (isinstance(outcome.running, dict) and len(progress.ended) < len(outcome.running)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        finally:
            follower.stop.set()
            follower.join(5)
    if follower.error is not None:
        print(f"halite orch: could not follow Salt's event bus: {follower.error}", file=sys.stderr)
    if isinstance(outcome.running, dict):
        # a step whose end event did not arrive still gets its line, from the result
        for ret in sorted(outcome.running.values(), key=lambda r: r.get("__run_num__", 0)):
            progress.show(decode(f"salt/job/{jid}/prog/{outcome.minion_id}/{ret.get('__run_num__', 0)}", {"ret": ret}, jid))
    print(file=out, flush=True)
    salt.output.display_output({outcome.minion_id: outcome.running}, "highstate", opts)
    ok = outcome.succeeded()
    print(f"halite orch {mods}: {'succeeded' if ok else 'FAILED'} in {progress.clock() - progress.t0:.1f}s", file=out, flush=True)
    return 0 if ok else 1
