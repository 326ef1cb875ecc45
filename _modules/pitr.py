"""
Point-in-time recovery of the cluster, the db-host side: the steps
``orch.restore`` runs on the members between "check the target" (on the
backup host, ``pgbackrest.plan_restore``) and "the cluster is healthy again"
(the usual gates).

The order (``salt/orch/restore.sls``):

1. :func:`stop` with ``role="replica"`` on every member, then with
   ``role="any"``: replicas first, so the leader never fails over to a member
   that is about to be overwritten; then the leader.
2. :func:`remove_cluster` once: the cluster's keys leave etcd (leader,
   members, history, the ``initialize`` key with the old system's history),
   so that the restored member may take the cluster over as its new leader.
3. ``pgbackrest.restore`` on the chosen member, then :func:`recover` there:
   PostgreSQL alone (not Patroni) replays the archive to the target and
   promotes, on a new timeline; pgBackRest's recovery settings are removed
   so that replicas copied from it do not inherit them.
4. Patroni starts on that member (it finds a data directory and no cluster,
   and takes the ``initialize`` key with it); :func:`wipe` on the others,
   whose Patroni then copies the new leader (``pg_basebackup``).

Every function raises :class:`salt.exceptions.CommandExecutionError` with one
sentence naming the step on failure. Standard library only (salt-ssh thin).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import time
import urllib.request

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "pitr"

PATRONI_UNIT = "patroni"
#: pgBackRest's recovery settings in postgresql.auto.conf (and anything else set with ALTER SYSTEM).
RESET_SQL = "ALTER SYSTEM RESET ALL;"


#: Where :func:`plan` leaves the checked target for :func:`restore` (on the member).
PLAN_FILE = "/var/lib/postgresql/halite-restore-plan.json"


def __virtual__():
    return __virtualname__


def _run(cmd: list[str], step: str, runas: str | None = None, timeout: float = 120, env=None) -> str:
    if runas and os.geteuid() == 0:
        cmd = ["runuser", "-u", runas, "--", *cmd]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                             env=dict(os.environ, **(env or {})))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandExecutionError(f"{step}: {exc}") from exc
    if res.returncode != 0:
        err = (res.stderr or res.stdout).strip().splitlines()
        raise CommandExecutionError(f"{step}: {err[-1] if err else f'exit {res.returncode}'}")
    return res.stdout


def _local_role(port: int, timeout: float = 3, ca_file=None) -> str | None:
    """The local member's role from Patroni's REST API, or None when it does not answer.

    :param ca_file: halite's CA: ask over https and verify against it (else plain http).
    """
    handlers = [urllib.request.ProxyHandler({})]
    if ca_file:
        try:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
        except (OSError, ssl.SSLError) as exc:
            raise CommandExecutionError(f"stop: the CA file {ca_file} cannot be used: {exc}") from None
    opener = urllib.request.build_opener(*handlers)
    scheme = "https" if ca_file else "http"
    try:
        with opener.open(f"{scheme}://127.0.0.1:{port}/patroni", timeout=timeout) as resp:
            return str(json.load(resp).get("role", "")).lower()
    except urllib.error.HTTPError as exc:  # 503 from a replica or a stopped PostgreSQL still has a body
        try:
            return str(json.loads(exc.read().decode()).get("role", "")).lower()
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def _postmaster_running(pg_path: str) -> bool:
    pid_file = os.path.join(pg_path, "postmaster.pid")
    try:
        with open(pid_file, encoding="utf-8") as fh:
            pid = int(fh.readline().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pg_path, bin_dir, role="any", api_port=8008, runas="postgres", timeout=120, api_ca_file=None):
    """Stop Patroni (and so PostgreSQL) on this member, if its role matches.

    :param role: ``replica``: stop unless this member is the leader (a member
        whose API does not answer counts as a replica); ``any``: stop.
    :param pg_path: the data directory; PostgreSQL still running after Patroni
        stopped is stopped with ``pg_ctl stop -m fast``.
    :param bin_dir: PostgreSQL's binaries, for pg_ctl.
    :param api_port: Patroni's REST API port.
    :param api_ca_file: halite's CA when Patroni's API speaks https (pillar
        ``halite:tls_clients:patroni_api_ca``); None for plain http.
    :returns: ``{"stopped": bool, "role": role seen}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh 'db-*' pitr.stop /var/lib/postgresql/15/halite /usr/lib/postgresql/15/bin role=replica
    """
    if role not in ("replica", "any"):
        raise CommandExecutionError(f"stop: role is {role!r}; replica or any")
    seen = _local_role(int(api_port), ca_file=api_ca_file)
    if role == "replica" and seen in ("leader", "master", "primary", "standby_leader"):
        return {"stopped": False, "role": seen}
    _run(["systemctl", "stop", PATRONI_UNIT], "stop (patroni)", timeout=timeout)
    if _postmaster_running(pg_path):
        _run([os.path.join(bin_dir, "pg_ctl"), "stop", "-D", pg_path, "-m", "fast", "-w", "-t", str(int(timeout))],
             "stop (pg_ctl)", runas=runas, timeout=timeout + 10)
    return {"stopped": True, "role": seen}


def remove_cluster(endpoints, namespace, scope, timeout=30, cacert=None, cert=None, key=None):
    """Delete the cluster's keys from etcd (``<namespace>/<scope>/``), once every member is stopped.

    :param endpoints: etcd client URLs, ``https://host:port`` (a list or a comma-separated string;
        pillar ``halite:tls_clients:etcd_urls``).
    :param namespace: Patroni's namespace (``/service``).
    :param scope: the cluster's name.
    :param cacert: halite's CA, when etcd speaks TLS (pillar ``halite:tls_clients:etcd``).
    :param cert: the client certificate etcd asks for.
    :param key: its key (root's).
    :returns: the number of keys deleted.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pitr.remove_cluster https://10.77.1.11:2379,https://10.77.1.12:2379 /service halite \\
            cacert=/etc/halite/tls/ca.crt cert=/etc/halite/tls/host.crt key=/etc/halite/tls/host.key
    """
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    prefix = f"{namespace.rstrip('/')}/{scope}/"
    if not scope or "/" in scope:
        raise CommandExecutionError(f"remove_cluster: scope {scope!r} is not a cluster name")
    tls = [f"--cacert={cacert}", f"--cert={cert}", f"--key={key}"] if cacert else []
    out = _run(["etcdctl", f"--endpoints={','.join(endpoints)}", *tls, "del", "--prefix", prefix],
               f"remove_cluster ({prefix})", timeout=timeout, env={"ETCDCTL_API": "3"})
    try:
        return int(out.strip().splitlines()[-1]) if out.strip() else 0
    except ValueError:
        return 0


def _psql(sql: str, port: int, socket_dir: str, runas: str, step: str) -> str:
    return _run(["psql", "-X", "-qAt", "-h", socket_dir, "-p", str(port), "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                 "-c", sql], step, runas=runas, timeout=60).strip()


def recover(pg_path, bin_dir, port=5432, socket_dir="/var/run/postgresql", runas="postgres", timeout=3600):
    """Run PostgreSQL alone on a restored data directory until it reaches the target and promotes.

    pgBackRest's restore leaves ``recovery.signal`` and its recovery settings
    (restore_command, the target, ``recovery_target_action=promote``) in
    ``postgresql.auto.conf``. PostgreSQL starts listening on the Unix socket
    only (nobody connects during recovery), replays WAL from the repository,
    stops at the target and promotes onto a new timeline. Then the settings
    are reset (ALTER SYSTEM RESET ALL: Patroni sets nothing there), a
    checkpoint is taken and PostgreSQL stops, ready for Patroni.

    :param pg_path: the data directory.
    :param bin_dir: PostgreSQL's binaries.
    :param port: PostgreSQL's port.
    :param socket_dir: its Unix socket's folder.
    :returns: ``{"seconds", "timeline", "lsn"}``.
    :raises CommandExecutionError: PostgreSQL's last log line when recovery fails
        (e.g. "recovery ended before configured recovery target was reached").

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pitr.recover /var/lib/postgresql/15/halite /usr/lib/postgresql/15/bin
    """
    started = time.monotonic()
    if not os.path.isdir(pg_path):
        raise CommandExecutionError(f"recover: {pg_path} does not exist")
    if _postmaster_running(pg_path):
        raise CommandExecutionError(f"recover: PostgreSQL already runs in {pg_path}")
    logfile = os.path.join(pg_path, "halite-recover.log")
    opts = f"-c listen_addresses='' -c port={int(port)} -c unix_socket_directories={socket_dir} -c hot_standby=on"
    try:
        _run([os.path.join(bin_dir, "pg_ctl"), "start", "-D", pg_path, "-l", logfile, "-w", "-t", "120", "-o", opts],
             "recover (start)", runas=runas, timeout=150)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"{exc}; {_last_log(logfile)}") from exc
    try:
        deadline = time.monotonic() + float(timeout)
        while True:
            if not _postmaster_running(pg_path):
                raise CommandExecutionError(f"recover: PostgreSQL stopped during recovery: {_last_log(logfile)}")
            try:
                if _psql("SELECT pg_is_in_recovery()", port, socket_dir, runas, "recover") == "f":
                    break
            except CommandExecutionError:
                pass  # not accepting connections yet
            if time.monotonic() > deadline:
                raise CommandExecutionError(f"recover: still in recovery after {timeout}s: {_last_log(logfile)}")
            time.sleep(1)
        _psql(RESET_SQL, port, socket_dir, runas, "recover (reset recovery settings)")
        _psql("CHECKPOINT", port, socket_dir, runas, "recover (checkpoint)")
        info = _psql("SELECT timeline_id || ' ' || pg_current_wal_lsn() FROM pg_control_checkpoint()",
                     port, socket_dir, runas, "recover (timeline)")
    finally:
        if _postmaster_running(pg_path):
            _run([os.path.join(bin_dir, "pg_ctl"), "stop", "-D", pg_path, "-m", "fast", "-w", "-t", "120"],
                 "recover (stop)", runas=runas, timeout=150)
    timeline, lsn = info.split()
    return {"seconds": round(time.monotonic() - started, 1), "timeline": int(timeline), "lsn": lsn}


def _last_log(logfile: str) -> str:
    try:
        with open(logfile, encoding="utf-8", errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return "no log"
    wanted = [ln for ln in lines if any(w in ln for w in ("FATAL", "PANIC", "ERROR"))]
    return (wanted or lines or ["empty log"])[-1]


def wipe(pg_path, confirm=False):
    """Empty a stopped member's data directory, so that Patroni copies the new leader.

    :param pg_path: the data directory, kept and emptied.
    :param confirm: must be True (it deletes the member's copy of the database).
    :returns: the number of entries removed.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-02 pitr.wipe /var/lib/postgresql/15/halite confirm=True
    """
    if confirm is not True:
        raise CommandExecutionError("wipe: deletes this member's data directory; pass confirm=True")
    if _postmaster_running(pg_path):
        raise CommandExecutionError(f"wipe: PostgreSQL runs in {pg_path}; stop the member first")
    if not os.path.isdir(pg_path):
        return 0
    removed = 0
    for entry in os.listdir(pg_path):
        path = os.path.join(pg_path, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        removed += 1
    return removed


def restore_points(database, socket_dir="/var/run/postgresql", port=5432, runas="postgres"):
    """The restore points this member knows (``halite.restore_points``): name -> LSN.

    Read on any member (a replica has them too), through the local socket.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pitr.restore_points carsale
    """
    cmd = ["psql", "-X", "-qAt", "-h", socket_dir, "-p", str(port), "-d", database, "-v", "ON_ERROR_STOP=1",
           "-c", "SELECT coalesce(json_object_agg(name, lsn::text), '{}') FROM halite.restore_points"]
    try:
        out = _run(cmd, "restore points", runas=runas, timeout=30)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"cannot read the restore points on this member ({exc}); "
                                    "is PostgreSQL running here? A time or an lsn needs no restore point") from exc
    return json.loads(out.strip() or "{}")


def plan(stanza, target, database, socket_dir="/var/run/postgresql", port=5432, plan_file=PLAN_FILE):
    """Check a recovery target before anything is stopped, and keep it for :func:`restore`.

    The target is checked against the repository (``pgbackrest.check_target``:
    not before the oldest backup, not in the future, a known restore point)
    and the backup to restore from is chosen; both are written to
    ``plan_file`` on this member.

    :param target: one of ``{"time": ...}``, ``{"lsn": ...}``, ``{"name": ...}``, ``{"latest": true}``.
    :returns: ``{"type", "target", "set"}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pitr.plan halite '{"name": "before-migration-42"}' carsale
    """
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except ValueError as exc:
            raise CommandExecutionError(f"target is not JSON: {target!r}") from exc
    known = (restore_points(database, socket_dir, port) if isinstance(target, dict) and "name" in target
             else None)
    # a restore point made a moment ago may still be on its way to the repository (asynchronous archiving)
    checked = __salt__["pgbackrest.check_target"](stanza, target, known_names=known, archive_wait=120)
    tmp = plan_file + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"stanza": stanza, "target": target, "checked": checked}, fh)
    os.replace(tmp, plan_file)
    return checked


def restore(stanza, pg_path, plan_file=PLAN_FILE):
    """Restore this (stopped) member's data directory to the target :func:`plan` checked.

    :returns: what ``pgbackrest.restore`` returns (seconds, set, type, target).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pitr.restore halite /var/lib/postgresql/15/halite
    """
    try:
        with open(plan_file, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CommandExecutionError(f"restore: no checked target in {plan_file} ({exc}); run pitr.plan first") from exc
    if saved.get("stanza") != stanza:
        raise CommandExecutionError(f"restore: {plan_file} is for stanza {saved.get('stanza')!r}, not {stanza!r}")
    if _postmaster_running(pg_path):
        raise CommandExecutionError(f"restore: PostgreSQL runs in {pg_path}; stop the member first")
    out = __salt__["pgbackrest.restore"](stanza, pg_path, target=saved["target"], set=saved["checked"].get("set"),
                                         delta=True, target_action="promote")
    os.unlink(plan_file)
    return out
