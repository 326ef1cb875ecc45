"""``make bench-backup``: backup, restore and RPO of the deployed lab, measured.

Two parts, one run, against a lab that ``halite orch deploy`` has laid down.

**Backups per database size.** For each pgbench scale (default 10, 50, 100)
the leader gets a separate database, ``halite_bench`` (dropped and created
again, then ``pgbench -i -s N``; the site's database is never touched), and
then, one after the other:

1. a **full** pgBackRest backup, run on the backup host as the timers run it
   (``pgbackrest --stanza=... --type=full backup``, from a standby since the
   backup host's file says ``backup-standby=y``): wall-clock seconds, and the
   backup's own size in the repository (``info.repository.delta`` of the
   newest backup in ``pgbackrest info --output=json``: compressed, encrypted);
2. **pg_basebackup** of the same cluster, run on a replica against the leader
   (tar, lz4 on the client, WAL fetched at the end, fast checkpoint), the
   replication user's password in the environment of that one process only:
   seconds and bytes written (``du -sb``), then removed;
3. 20 s of ``pgbench -c 4`` writes on the leader, then an **incremental**
   backup: seconds and its own size in the repository;
4. a **restore** of the newest backup on the backup host into a scratch
   folder, with the drill's file (the repository alone; ``--type=immediate``,
   ``--archive-mode=off``; PostgreSQL is not started): seconds, restored bytes
   (``du -sb``), seconds per GB (10^9 bytes); then removed;
5. ratios of that same run: pgBackRest full ÷ pg_basebackup (time, size),
   incremental ÷ full (size).

**RPO with asynchronous archiving.** ``halite_bench`` is emptied and an
incremental backup taken (so each restore below is small); then, per run:

1. on the leader: table ``rpo(id bigserial, t timestamptz default
   clock_timestamp())`` made anew with one baseline row, the WAL segment
   switched and waited for until the repository holds it (the baseline is in
   the archive, and the ``archive_timeout`` cycle starts there);
2. a writer inside the leader (a bounded bash loop of ``psql`` as postgres
   over the Unix socket) commits one row about every 0.2 s and prints each
   acknowledged ``id`` and its commit-time ``t``;
3. after ``archive_timeout + 5`` to ``2 * archive_timeout + 5`` seconds of
   writes (spread evenly over the runs, at most 105 s: the writer stops by
   itself after 120 s) every db host loses power at once
   (:func:`halite.faults.poweroff`): one timeout-forced segment switch has
   been pushed, and the cut falls at a different point of the next cycle in
   each run;
4. on the backup host the repository's latest state is restored
   (``--type=default --archive-mode=off``) into a scratch folder and started
   alone (its own config: a Unix socket there, port ``backup.drill_port``, no
   TCP, no archiving, ``max_*`` at least what ``pg_controldata`` says), and
   once out of recovery ``max(id)`` and its ``t`` are read; it is stopped by
   its PID file and removed;
5. the db hosts are powered on and the cluster waited for (one leader, every
   replica streaming; 300 s at most).

RPO of a run = acknowledged rows missing from the restored copy, and seconds
between the last acknowledged commit and the newest restored one (both times
from PostgreSQL's clock: the hosts share this machine's kernel). The result
holds every run and the medians, with how many runs they come from.

What it changes: the site's repository gets one full and two incremental
backups per scale plus one (``repo1-retention-full`` expires older full
backups as usual); the cluster loses power ``--rpo-runs`` times;
``halite_bench`` is dropped at the end (``--keep-database`` keeps it).
Every command inside a host runs under ``timeout``, every wait is bounded,
the writer stops by itself, the scratch server is stopped by its PID and
db hosts powered off are powered on again even when a step fails.
Expect about 25 minutes with the default scales and three RPO runs.

Results: ``bench/results/backup.json`` and ``backup.md``.

CLI Example::

    python -m halite.backupbench
    python -m halite.backupbench --scales 10 --rpo-runs 1 --out /tmp/bench
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from halite import config, formats, lab, platforms, report, view

#: The bench's own database on the cluster (never the site's).
BENCH_DB = "halite_bench"
DEFAULT_SCALES = (10, 50, 100)
#: pg_basebackup's target on the replica that runs it.
BASEBACKUP_DIR = "/var/tmp/halite-bench-basebackup"
#: Scratch folders under the backup host's drill folder (``view.PGBACKREST_PATHS["drill_dir"]``).
RESTORE_SCRATCH = "bench"
RPO_SCRATCH = "bench-rpo"
#: The scratch server's own configuration file, in its scratch folder.
SCRATCH_CONF = "bench.conf"
#: Writes between the full and the incremental backup.
PGBENCH_SECONDS, PGBENCH_CLIENTS = 20, 4
#: The RPO writer: one commit about every WRITER_INTERVAL s; it stops by itself
#: WRITER_GRACE s after the planned cut, and never runs longer than WRITER_MAX s.
WRITER_INTERVAL = 0.2
WRITER_MAX = 120
WRITER_GRACE = 15
#: 10^9 bytes: "seconds per GB" and the sizes in the table.
GB = 10**9

# Seconds any one step may take (each command inside a host runs under `timeout`).
SQL_TIMEOUT = 120
LOAD_TIMEOUT = 3600          # pgbench -i
BACKUP_TIMEOUT = 3600        # a pgBackRest backup, pg_basebackup, a restore
CATCHUP_TIMEOUT = 600        # replicas replaying up to the leader
ARCHIVE_TIMEOUT = 120        # a switched WAL segment reaching the repository
RECOVERY_TIMEOUT = 600       # the scratch copy leaving recovery
HEAL_TIMEOUT = 300           # the cluster whole again after the power cut
SSH_TIMEOUT = 180            # powered-on hosts answering again
FIRST_ACK_TIMEOUT = 30       # the writer's first acknowledged commit

_LEADER_ROLES = ("leader", "primary", "master")
_WAL_NAME = re.compile(r"^[0-9A-F]{24}$")
_ACK = re.compile(r"^(\d+)\|(\d+(?:\.\d+)?)$")


def log(msg: str) -> None:
    print(f"[backup-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Ack(NamedTuple):
    """One acknowledged commit of the RPO writer: its id and PostgreSQL's ``t`` (epoch seconds)."""

    id: int
    t: float


# --------------------------------------------------------------------------
# pure parts: parsing, arithmetic, command lines
# --------------------------------------------------------------------------


def newest_backup(info: Any, stanza: str, type: str | None = None,  # noqa: A002  (pgBackRest's word)
                  since: float | None = None) -> dict:
    """The newest backup of ``stanza`` in ``pgbackrest info --output=json`` (decoded).

    :param info: the decoded JSON: a list with one object per stanza.
    :param stanza: the stanza.
    :param type: ``full``, ``diff`` or ``incr``: the newest backup must be of this type.
    :param since: epoch seconds: the newest backup must have started at or after this.
    :returns: ``{"label", "type", "repo_bytes"`` (this backup's own files in the
        repository, ``info.repository.delta``), ``"repo_set_bytes"`` (with the
        backups it references, ``info.repository.size``), ``"db_bytes"`` (the
        cluster as pgBackRest saw it, ``info.size``), ``"copied_bytes"``
        (``info.delta``), ``"pgbackrest_seconds"`` (stop − start)``}``.
    :raises ValueError: no such stanza, no backup, or the newest is not the one expected.
    """
    if not isinstance(info, list):
        raise ValueError(f"pgbackrest info: expected a list of stanzas, got {str(info)[:200]}")
    record = next((s for s in info if isinstance(s, dict) and s.get("name") == stanza), None)
    if record is None:
        raise ValueError(f"pgbackrest info: stanza {stanza!r} is not in the answer")
    backups = [b for b in record.get("backup") or [] if isinstance(b, dict)]
    if not backups:
        raise ValueError(f"pgbackrest info: stanza {stanza!r} has no backup")
    newest = max(backups, key=lambda b: ((b.get("timestamp") or {}).get("stop") or 0, b.get("label") or ""))
    stamp = newest.get("timestamp") or {}
    if type is not None and newest.get("type") != type:
        raise ValueError(f"pgbackrest info: the newest backup {newest.get('label')} is {newest.get('type')}, "
                         f"not the {type} backup just taken")
    if since is not None and (stamp.get("start") or 0) < since:
        raise ValueError(f"pgbackrest info: the newest backup {newest.get('label')} started before the one just "
                         "taken: the backup did not reach the repository")
    size = newest.get("info") or {}
    repo = size.get("repository") or {}
    start, stop = stamp.get("start"), stamp.get("stop")
    return {
        "label": newest.get("label"),
        "type": newest.get("type"),
        "repo_bytes": repo.get("delta"),
        "repo_set_bytes": repo.get("size"),
        "db_bytes": size.get("size"),
        "copied_bytes": size.get("delta"),
        "pgbackrest_seconds": stop - start if isinstance(start, int) and isinstance(stop, int) else None,
    }


def parse_du(text: str) -> int:
    """Bytes from ``du -sb PATH`` (its first field)."""
    field = text.split()[0] if text.split() else ""
    if not field.isdigit():
        raise ValueError(f"du -sb: expected a byte count, got {text.strip()[:100]!r}")
    return int(field)


def parse_pgbench(text: str) -> dict:
    """``{"tps", "transactions"}`` from pgbench's summary (None where absent)."""
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    return {"tps": round(float(tps.group(1)), 1) if tps else None,
            "transactions": int(done.group(1)) if done else None}


def parse_acks(lines: Iterable[str]) -> list[Ack]:
    """The writer's acknowledged commits (``id|epoch`` lines), in id order; other lines ignored."""
    acks = []
    for line in lines:
        m = _ACK.match(line.strip())
        if m:
            acks.append(Ack(int(m.group(1)), float(m.group(2))))
    return sorted(acks)


def archived_since(last_archived: str | None, segment: str) -> bool:
    """Whether ``pg_stat_archiver.last_archived_wal`` is ``segment`` or a later WAL segment.

    History and ``.partial`` files are not segments (a later segment follows them anyway).
    """
    if not last_archived or not _WAL_NAME.match(last_archived) or not _WAL_NAME.match(segment):
        return False
    return last_archived >= segment  # timeline, then log, then segment: fixed-width hex


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded to 3 places; None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def seconds_per_gb(seconds: float | None, size: int | None) -> float | None:
    """Seconds per 10^9 bytes."""
    return ratio(seconds, None if size is None else size / GB)


def scale_ratios(entry: dict) -> dict:
    """The same run's comparisons: pgBackRest full ÷ pg_basebackup (time, size), incremental ÷ full (size)."""
    full, base, incr = entry["full"], entry["basebackup"], entry["incr"]
    return {
        "full_vs_basebackup_time": ratio(full["seconds"], base["seconds"]),
        "full_vs_basebackup_size": ratio(full["repo_bytes"], base["bytes"]),
        "incr_vs_full_size": ratio(incr["repo_bytes"], full["repo_bytes"]),
    }


def rpo_result(acks: Sequence[Ack], restored_id: int, restored_t: float) -> dict:
    """What one power cut lost: acknowledged rows missing from the restored copy, and seconds.

    The writer commits one row at a time, so the restored rows are a prefix of
    the ids: an acknowledged id above the restored ``max(id)`` is lost.

    :param acks: the writer's acknowledged commits.
    :param restored_id: ``max(id)`` in the restored copy (the baseline row at least).
    :param restored_t: that row's ``t`` (epoch seconds).
    :returns: ``{"acked_writes", "last_acked_id", "last_acked_t", "restored_id",
        "restored_t", "rows_lost", "seconds"`` (last acknowledged ``t`` − restored
        ``t``, never below 0), ``"unacknowledged_restored"`` (rows restored beyond
        the last acknowledgement: commits whose answer the power cut swallowed)``}``.
    """
    last = max(acks) if acks else None
    lost = [a for a in acks if a.id > restored_id]
    return {
        "acked_writes": len(acks),
        "last_acked_id": last.id if last else None,
        "last_acked_t": last.t if last else None,
        "restored_id": restored_id,
        "restored_t": restored_t,
        "rows_lost": len(lost),
        "seconds": round(max(0.0, last.t - restored_t), 3) if last else 0.0,
        "unacknowledged_restored": max(0, restored_id - last.id) if last else 0,
    }


def median_of(values: Iterable[float | int | None]) -> tuple[float | None, int]:
    """(median of the values that are not None, how many there were)."""
    have = [v for v in values if v is not None]
    return (statistics.median(have) if have else None), len(have)


def rpo_summary(runs: Sequence[dict], archive_timeout: int) -> dict:
    """The RPO section of the results: every run, the medians and how many runs they come from."""
    seconds, n = median_of(r.get("seconds") for r in runs)
    rows, _ = median_of(r.get("rows_lost") for r in runs)
    return {"runs": list(runs), "median_seconds": None if seconds is None else round(seconds, 3),
            "median_rows_lost": rows, "median_of_runs": n, "archive_timeout": archive_timeout,
            "archive_async": True}


def rpo_window(archive_timeout: int) -> tuple[float, float]:
    """Seconds of writes before the cut, earliest and latest.

    From ``archive_timeout + 5`` (the first timeout-forced switch has been
    pushed) to one cycle later, within what the writer's bound allows; without
    a usable ``archive_timeout`` (0, or too long for the bound), 30 to 60 s.
    """
    longest = WRITER_MAX - WRITER_GRACE
    if 0 < archive_timeout and archive_timeout + 5 < longest:
        return float(archive_timeout + 5), float(min(2 * archive_timeout + 5, longest))
    return 30.0, 60.0


def write_seconds(run: int, runs: int, archive_timeout: int, fixed: float | None = None) -> float:
    """How long run ``run`` (0-based) of ``runs`` writes before the cut: evenly spread over :func:`rpo_window`."""
    if fixed is not None:
        return float(fixed)
    low, high = rpo_window(archive_timeout)
    return round(low + (high - low) * (run + 0.5) / runs, 1)


def cluster_whole(members: Sequence[dict], db_hosts: Sequence[str]) -> bool:
    """One leader running, every other db host streaming, no member missing or extra."""
    leaders = [m for m in members if m.get("role") in _LEADER_ROLES and m.get("state") == "running"]
    streaming = [m for m in members if m.get("role") not in _LEADER_ROLES and m.get("state") == "streaming"]
    return (len(leaders) == 1 and len(streaming) == len(db_hosts) - 1
            and {m.get("name") for m in members} == set(db_hosts))


def leader_of(members: Sequence[dict]) -> str | None:
    """The one member with the leader role, or None."""
    leaders = [m["name"] for m in members if m.get("role") in _LEADER_ROLES]
    return leaders[0] if len(leaders) == 1 else None


#: pg_controldata's line -> the setting the restored copy needs at least as high.
CONTROL_MINIMUMS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


def controldata_minimums(text: str) -> dict[str, int]:
    """``{setting: value}`` from ``pg_controldata`` for the settings recovery checks."""
    out = {}
    for line in text.splitlines():
        label, _, value = line.partition(":")
        name = CONTROL_MINIMUMS.get(label.strip())
        if name and value.strip().isdigit():
            out[name] = int(value.strip())
    return out


def scratch_settings(home: str, port: int, minimums: dict[str, int]) -> dict[str, Any]:
    """The scratch copy's whole configuration: alone on a Unix socket in ``home``, archiving nothing.

    Not the restored postgresql.conf: that one is Patroni's, for a database host.
    """
    return {
        "listen_addresses": "",
        "port": int(port),
        "unix_socket_directories": home,
        "hba_file": f"{home}/pg_hba.conf",
        "ident_file": f"{home}/pg_ident.conf",
        "archive_mode": "off",
        "shared_preload_libraries": "",
        "ssl": "off",
        "cluster_name": "halite-backup-bench",
        "shared_buffers": "32MB",
        "hot_standby": "off",          # no connection before recovery has ended
        "fsync": "off",                # a throwaway copy
        "wal_init_zero": "off",
        "autovacuum": "off",
        "logging_collector": "off",
        "log_destination": "stderr",
        "lc_messages": "C",
        "timezone": "UTC",
        **minimums,
    }


#: Settings that keep the copy to itself, given on the command line too: they win over
#: postgresql.auto.conf in the restored data directory (the cluster's ALTER SYSTEM, and
#: pgBackRest's recovery settings, which must stay).
ISOLATION = ("listen_addresses", "port", "unix_socket_directories", "hba_file", "ident_file", "archive_mode",
             "shared_preload_libraries", "ssl")


def scratch_options(conf: str, settings: dict[str, Any]) -> str:
    """pg_ctl's ``-o``: our config file and the :data:`ISOLATION` settings (values without spaces)."""
    words = [f"config_file={conf}"] + [f"{key}={settings[key]}" for key in ISOLATION]
    bad = [w for w in words if re.search(r"[\s'\"\\$`]", w)]
    if bad:
        raise ValueError(f"scratch server options must not hold spaces or quotes: {bad}")
    return " ".join(f"-c {w}" for w in words)


def conf_text(settings: dict[str, Any]) -> str:
    """postgresql.conf lines, every value quoted."""
    lines = ["# written by halite.backupbench: a restored copy, alone, on a Unix socket\n"]
    for key, value in settings.items():
        lines.append(f"{key} = '" + str(value).replace("'", "''") + "'\n")
    return "".join(lines)


def bounded(argv: Sequence[str], seconds: float) -> list[str]:
    """``argv`` under coreutils' ``timeout`` inside the host: TERM after ``seconds``, KILL 10 s later."""
    return ["timeout", "-k", "10", str(int(math.ceil(seconds))), *map(str, argv)]


def shown(argv: Sequence[str], width: int = 160) -> str:
    """A command line for a message: runuser's prefix left out, whitespace folded, cut at ``width``."""
    words = list(argv[4:] if list(argv[:4]) == ["runuser", "-u", "postgres", "--"] else argv)
    text = " ".join(" ".join(str(w).split()) for w in words)
    return text if len(text) <= width else text[:width - 3] + "..."


def as_postgres(argv: Sequence[str]) -> list[str]:
    """``argv`` run as postgres (peer authentication on the socket, the repository's owner)."""
    return ["runuser", "-u", "postgres", "--", *map(str, argv)]


def psql_argv(pg_bin: str, socket_dir: str, port: int, database: str, sql: Sequence[str] | str) -> list[str]:
    """psql as postgres over the Unix socket, unaligned tuples only, stopping at the first error."""
    statements = [sql] if isinstance(sql, str) else list(sql)
    argv = [f"{pg_bin}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", socket_dir, "-p", str(port), "-d", database]
    for statement in statements:
        argv += ["-c", statement]
    return as_postgres(argv)


def pgbackrest_argv(stanza: str, command: str, options: Sequence[str] = (), config_file: str | None = None) -> list[str]:
    """``pgbackrest [--config=...] --stanza=... [options] command`` as postgres (the repository's owner)."""
    argv = ["pgbackrest"] + ([f"--config={config_file}"] if config_file else [])
    return as_postgres([*argv, f"--stanza={stanza}", *options, command])


def pgbench_init_argv(pg_bin: str, socket_dir: str, port: int, scale: int) -> list[str]:
    """pgbench's tables in ``halite_bench`` at ``scale`` (about 15 MB per unit), quiet progress."""
    return as_postgres([f"{pg_bin}/pgbench", "-i", "-s", str(scale), "-q", "-h", socket_dir, "-p", str(port),
                        BENCH_DB])


def pgbench_run_argv(pg_bin: str, socket_dir: str, port: int, seconds: int = PGBENCH_SECONDS,
                     clients: int = PGBENCH_CLIENTS) -> list[str]:
    """pgbench's default (TPC-B like) writes on ``halite_bench`` for ``seconds`` with ``clients``."""
    return as_postgres([f"{pg_bin}/pgbench", "-T", str(seconds), "-c", str(clients), "-h", socket_dir,
                        "-p", str(port), BENCH_DB])


def basebackup_argv(pg_bin: str, server: str, user: str, target: str = BASEBACKUP_DIR) -> list[str]:
    """pg_basebackup of the leader: tar, lz4 on the client, WAL fetched, fast checkpoint.

    :param server: the leader as a libpq conninfo (host, port and, with TLS, the options that
        verify it: :func:`halite.formats.server_options`).

    The password is not here: it goes in PGPASSWORD, in that process's
    environment only; ``--no-password`` makes a missing one an error, not a prompt.
    """
    return [f"{pg_bin}/pg_basebackup", "-d", server, "-U", user, "-D", target,
            "-Ft", "--compress=lz4", "-X", "fetch", "-c", "fast", "--no-password"]


def restore_argv(stanza: str, drill_conf: str, pg_path: str, type: str = "immediate") -> list[str]:  # noqa: A002
    """A restore on the backup host with the drill's file (the repository alone) into ``pg_path``."""
    return pgbackrest_argv(stanza, "restore", [f"--pg1-path={pg_path}", f"--type={type}", "--archive-mode=off"],
                           config_file=drill_conf)


#: The RPO writer, run by bash as postgres inside the leader. Arguments: loop
#: seconds, psql, socket folder, port, database, interval. It prints its process
#: group first (so it can be stopped by it), then ``id|epoch`` per acknowledged commit.
WRITER_SCRIPT = r"""
printf 'pgid %s\n' "$(ps -o pgid= -p $$ | tr -d ' ')"
end=$((SECONDS + $1))
while [ "$SECONDS" -lt "$end" ]; do
  "$2" -XAtq -h "$3" -p "$4" -d "$5" -c 'INSERT INTO rpo DEFAULT VALUES RETURNING id, extract(epoch FROM t)'
  sleep "$6"
done
"""


def writer_argv(pg_bin: str, socket_dir: str, port: int, seconds: float,
                interval: float = WRITER_INTERVAL) -> list[str]:
    """The writer for a cut after ``seconds``: it loops ``WRITER_GRACE`` s longer, never over ``WRITER_MAX``.

    setpriv (not runuser) keeps bash in ``timeout``'s process group, so the
    outer bound reaches every process of the loop.
    """
    loop = min(WRITER_MAX, int(math.ceil(seconds + WRITER_GRACE)))
    inner = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "bash", "-c", WRITER_SCRIPT,
             "halite-bench-writer", str(loop), f"{pg_bin}/psql", socket_dir, str(port), BENCH_DB, str(interval)]
    return ["timeout", "-k", "5", str(loop + 5), *inner]


def parse_scales(text: str) -> list[int]:
    """``"10,50,100"`` -> ``[10, 50, 100]``; ``""`` -> ``[]`` (no backup part)."""
    scales = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 100000:
            raise argparse.ArgumentTypeError(f"a pgbench scale is a whole number from 1 to 100000, not {part!r}")
        scales.append(int(part))
    return scales


def _rpo_runs(text: str) -> int:
    if not text.isdigit() or int(text) > 20:
        raise argparse.ArgumentTypeError(f"--rpo-runs is a whole number from 0 to 20, not {text!r}")
    return int(text)


def _cut_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 5 <= value <= WRITER_MAX - WRITER_GRACE:
        raise argparse.ArgumentTypeError(f"--rpo-write-seconds is from 5 to {WRITER_MAX - WRITER_GRACE}, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m halite.backupbench",
                                description="Backup, restore and RPO of the deployed lab (bench/results/backup.*).")
    p.add_argument("--scales", type=parse_scales, default=list(DEFAULT_SCALES),
                   help="pgbench scales, comma-separated (default 10,50,100; '' skips the backup part)")
    p.add_argument("--rpo-runs", type=_rpo_runs, default=3, help="power cuts measured (default 3; 0 skips)")
    p.add_argument("--rpo-write-seconds", type=_cut_seconds, default=None,
                   help="seconds of writes before each cut (default: spread over one archive_timeout cycle)")
    p.add_argument("--out", default="bench/results", help="folder for backup.json and backup.md")
    p.add_argument("--keep-database", action="store_true", help=f"keep {BENCH_DB} on the cluster at the end")
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# results: JSON and the table
# --------------------------------------------------------------------------


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def fmt_seconds(s: float | None) -> str:
    return "–" if s is None else f"{s:.1f} s"


def fmt_count(n: float | None) -> str:
    """A count, or a median of counts (``92.5``)."""
    return "–" if n is None else f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


def fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def new_results(data: dict) -> dict:
    """The results' frame: when, on what, with which backup settings."""
    machine = report.machine_info()
    b = data["backup"]
    return {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": machine.get("nproc"), **machine},
        "settings": {"stanza": b["stanza"], "backup_host": view.backup_host(data),
                     "cipher_type": b["cipher_type"], "compress_type": b["compress_type"],
                     "process_max": b["process_max"], "backup_standby": True, "archive_async": True,
                     "archive_timeout": b["archive_timeout"],
                     "pgbench_writes": {"seconds": PGBENCH_SECONDS, "clients": PGBENCH_CLIENTS}},
        "scales": [],
        "rpo": None,
    }


def markdown(results: dict) -> str:
    """backup.md: what was measured, two tables per size, the RPO runs and their medians."""
    m, s = results["machine"], results["settings"]
    out = [f"# Backups, restores and RPO (pgBackRest, pg_basebackup)\n\n"
           f"Measured {results['when']} on {m.get('cores')} cores"
           + (f" ({m['cpu_model']})" if m.get("cpu_model") else "")
           + (f", {m['mem_total_gib']} GiB RAM" if m.get("mem_total_gib") else "")
           + ". Every lab host is a container on this one machine: they share its disks and CPUs.\n\n"
           f"pgBackRest: repository on {s['backup_host']}, stanza `{s['stanza']}`, encryption {s['cipher_type']}, "
           f"compression {s['compress_type']}, process-max {s['process_max']}, backups copied from a standby. "
           "pg_basebackup: from the leader to a replica's disk, tar, lz4 on the client, WAL fetched. "
           "Sizes in decimal units (1 GB = 10^9 bytes).\n"]
    scales = results.get("scales") or []
    if scales:
        out.append("\n## Full backup: pgBackRest against pg_basebackup\n\n")
        out.append(report._md(  # noqa: SLF001  (the house's markdown table)
            ["pgbench scale", f"{BENCH_DB} size", "whole cluster", "pgBackRest full", "in the repository",
             "pg_basebackup", "its size", "time, full ÷ basebackup", "size, full ÷ basebackup"],
            [[e["scale"], fmt_bytes(e["db_bytes"]), fmt_bytes(e["cluster_bytes"]),
              fmt_seconds(e["full"]["seconds"]), fmt_bytes(e["full"]["repo_bytes"]),
              fmt_seconds(e["basebackup"]["seconds"]), fmt_bytes(e["basebackup"]["bytes"]),
              fmt_ratio(e["ratios"]["full_vs_basebackup_time"]), fmt_ratio(e["ratios"]["full_vs_basebackup_size"])]
             for e in scales]))
        w = s["pgbench_writes"]
        out.append(f"\n## Incremental backup after {w['seconds']} s of pgbench ({w['clients']} clients), "
                   "and restore of the newest backup\n\n")
        out.append(report._md(  # noqa: SLF001
            ["pgbench scale", "pgbench tps", "incremental", "in the repository", "incr. ÷ full size",
             "restore", "restored", "restore s per GB"],
            [[e["scale"], fmt_count(None if e["writes"].get("tps") is None else round(e["writes"]["tps"])),
              fmt_seconds(e["incr"]["seconds"]), fmt_bytes(e["incr"]["repo_bytes"]),
              fmt_ratio(e["ratios"]["incr_vs_full_size"]), fmt_seconds(e["restore"]["seconds"]),
              fmt_bytes(e["restore"]["bytes"]), e["restore"]["seconds_per_gb"]]
             for e in scales]))
        out.append("\nTimes are wall-clock seconds of the whole command (pgBackRest's include the checkpoint, "
                   "the wait for the standby and for the last WAL segment to be archived). \"In the "
                   "repository\" is that backup's own files there, compressed and encrypted. The restore "
                   "writes the data directory only; PostgreSQL is not started.\n")
    rpo = results.get("rpo")
    if rpo:
        out.append(f"\n## RPO when every database host is lost (asynchronous archiving, archive_timeout "
                   f"{rpo['archive_timeout']} s)\n\n")
        out.append(report._md(  # noqa: SLF001
            ["run", "writes before the cut", "acknowledged", "last acknowledged (UTC)", "newest restored (UTC)",
             "rows lost", "RPO", "restore + recovery", "cluster whole again"],
            [[r["run"], fmt_seconds(r["write_seconds"]), r["acked_writes"], fmt_time(r["last_acked_t"]),
              fmt_time(r["restored_t"]), r["rows_lost"], fmt_seconds(r["seconds"]),
              fmt_seconds(None if r.get("restore_seconds") is None
                          else r["restore_seconds"] + (r.get("recovery_seconds") or 0)),
              fmt_seconds(r.get("heal_seconds"))]
             for r in rpo["runs"]]))
        if rpo["median_of_runs"]:
            out.append(f"\nMedian of {rpo['median_of_runs']} run{'s' if rpo['median_of_runs'] != 1 else ''}: "
                       f"RPO {fmt_seconds(rpo['median_seconds'])}, {fmt_count(rpo['median_rows_lost'])} "
                       "acknowledged rows lost.\n")
        out.append("\nA writer commits one row about every 0.2 s on the leader; every db host then loses power "
                   "at once; the repository's latest state is restored on the backup host and read. RPO = "
                   "seconds between the last acknowledged commit and the newest restored one; rows lost = "
                   "acknowledged commits missing from the restored copy. Each run starts right after a WAL "
                   "segment switch, and the cut falls after the first switch forced by archive_timeout, at a "
                   "different point of the next cycle in each run: expect about the time since that switch plus "
                   "the asynchronous push, at worst archive_timeout plus the push.\n")
    return "".join(out)


def write_results(results: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``backup.json`` and ``backup.md`` under ``out_dir`` (each written whole, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "backup.json", "md": out / "backup.md"}
    report._dump(paths["json"], results)  # noqa: SLF001
    report._write_text(paths["md"], markdown(results))  # noqa: SLF001
    return paths


# --------------------------------------------------------------------------
# acting on the lab
# --------------------------------------------------------------------------


class Hosts:
    """Commands inside the lab's hosts: ``nsenter`` into the namespaces of the host's init.

    Every command runs under ``timeout`` inside the host, so it ends there even
    if this process is gone; the control side waits 30 s longer at most.
    """

    def run(self, host: str, argv: Sequence[str], timeout: float = SQL_TIMEOUT, env: dict | None = None,
            input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:  # noqa: A002
        cmd = ["nsenter", "-t", str(lab.leader_pid(host)), "-a", *bounded(argv, timeout)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, errors="replace", input=input,
                                 timeout=timeout + 30, env=dict(os.environ, LC_ALL="C", **(env or {})))
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{host}: {shown(argv)}: no answer within {timeout:.0f} s") from exc
        if check and res.returncode != 0:
            said = (res.stderr.strip() or res.stdout.strip() or "(no message)").splitlines()[-3:]
            raise RuntimeError(f"{host}: {shown(argv)} exited {res.returncode}: {' | '.join(said)}")
        return res

    def start(self, host: str, argv: Sequence[str]) -> subprocess.Popen:
        """Start ``argv`` (already bounded by the caller) in ``host``; its output merged on ``stdout``."""
        return subprocess.Popen(["nsenter", "-t", str(lab.leader_pid(host)), "-a", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")


def _pg_paths(data: dict, host: str) -> dict:
    """The host's PostgreSQL paths (binaries, socket), as its states lay them down."""
    plat = view.host_platform(data, host)
    return platforms.resolve(plat["os_family"], plat["postgresql_version"])["paths"]


class Bench:
    """What every step needs: the checked configuration, hosts, paths, and how to act on the lab.

    ``hosts``, ``members``, ``power_off``, ``power_on`` and ``clock`` default to
    the lab's own (nsenter, Patroni's API, :mod:`halite.faults`, :mod:`time`);
    tests give stand-ins.
    """

    def __init__(self, data: dict, hosts: Hosts | None = None, members: Callable[[], list[dict]] | None = None,
                 power_off: Callable[[list[str]], None] | None = None,
                 power_on: Callable[[list[str]], None] | None = None, clock: Any = time, say: Callable = log):
        topo = data["topology"]
        self.data = data
        self.hosts = hosts or Hosts()
        self.clock, self.say = clock, say
        self.db_hosts = view.hosts_with_role(topo, "db")
        self.backup_host = view.backup_host(data)
        if not self.backup_host or not self.db_hosts:
            raise RuntimeError("the topology needs db hosts and a host with the role backup")
        if BENCH_DB == data["users"]["app"]["database"]:
            raise RuntimeError(f"the site's database is called {BENCH_DB}: the bench would replace it")
        self.address = {h: view.cluster_address(topo, h) for h in self.db_hosts}
        self.stanza = data["backup"]["stanza"]
        self.port = data["postgresql"]["port"]
        db_paths = _pg_paths(data, self.db_hosts[0])
        self.pg_bin, self.socket_dir = db_paths["pg_bindir"], db_paths["pg_socket_dir"]
        self.backup_bin = _pg_paths(data, self.backup_host)["pg_bindir"]
        self.drill_conf = view.PGBACKREST_PATHS["drill_conf"]
        self.drill_dir = view.PGBACKREST_PATHS["drill_dir"]
        self.scratch_port = data["backup"]["drill_port"]
        self.archive_timeout = data["backup"]["archive_timeout"]
        repl = data["users"]["replication"]
        self.repl_user, self.repl_password = repl["username"], repl["password"]
        self._members, self._power_off, self._power_on = members, power_off, power_on

    # the lab's own actions, unless stand-ins were given

    def members(self) -> list[dict]:
        if self._members is None:
            from halite import failover

            self._members = failover.Cluster(self.data).members
        return self._members()

    def power_off(self, hosts: list[str]) -> None:
        if self._power_off:
            return self._power_off(hosts)
        from halite import faults

        self.say(faults.poweroff(*hosts))

    def power_on(self, hosts: list[str]) -> None:
        if self._power_on:
            return self._power_on(hosts)
        from halite import faults

        for host in hosts:
            self.say(faults.poweron(host, wait=False))
        lab.wait_ssh(self.data["topology"], hosts, timeout=SSH_TIMEOUT)

    # small helpers

    def scratch(self, name: str) -> str:
        """A folder under the drill folder (never the drill folder itself)."""
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ValueError(f"bad scratch name {name!r}")
        return f"{self.drill_dir}/{name}"

    def psql(self, host: str, sql: Sequence[str] | str, database: str = "postgres",
             timeout: float = SQL_TIMEOUT) -> str:
        return self.hosts.run(host, psql_argv(self.pg_bin, self.socket_dir, self.port, database, sql),
                              timeout).stdout.strip()

    def du(self, host: str, path: str) -> int:
        return parse_du(self.hosts.run(host, ["du", "-sb", path]).stdout)

    def remove(self, host: str, path: str) -> None:
        self.hosts.run(host, ["rm", "-rf", "--one-file-system", path], check=False)

    def leader(self) -> str:
        leader = leader_of(self.members())
        if not leader:
            raise RuntimeError("the cluster has no single leader")
        return leader


def timed(b: Bench, fn: Callable[[], Any]) -> tuple[Any, float]:
    """(what ``fn`` returned, its wall-clock seconds)."""
    began = b.clock.monotonic()
    result = fn()
    return result, round(b.clock.monotonic() - began, 3)


def wait_cluster_whole(b: Bench, timeout: float = HEAL_TIMEOUT, stable: float = 5.0) -> float:
    """Seconds until the cluster was whole (:func:`cluster_whole`) and stayed so ``stable`` seconds."""
    began = b.clock.monotonic()
    first_ok, members, problem = None, [], ""
    while b.clock.monotonic() - began < timeout:
        try:
            members, problem = b.members(), ""
        except RuntimeError as exc:
            members, problem = [], str(exc)
        now = b.clock.monotonic()
        if cluster_whole(members, b.db_hosts):
            first_ok = now if first_ok is None else first_ok
            if now - first_ok >= stable:
                return round(first_ok - began, 1)
        else:
            first_ok = None
        b.clock.sleep(1)
    seen = ", ".join(f"{m.get('name')}:{m.get('role')}/{m.get('state')}" for m in members) or problem or "nothing"
    raise RuntimeError(f"the cluster was not whole within {timeout:.0f} s (one leader, "
                       f"{len(b.db_hosts) - 1} streaming replicas expected; saw {seen})")


def wait_replicas(b: Bench, leader: str, timeout: float = CATCHUP_TIMEOUT) -> None:
    """Until every replica has replayed the leader's current WAL position (pgBackRest copies from one)."""
    lsn = b.psql(leader, "SELECT pg_current_wal_lsn()")
    began = b.clock.monotonic()
    pending = [h for h in b.db_hosts if h != leader]
    while pending:
        pending = [h for h in pending
                   if b.psql(h, f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)") != "t"]
        if not pending:
            return
        if b.clock.monotonic() - began > timeout:
            raise RuntimeError(f"replicas {', '.join(pending)} did not replay up to {lsn} within {timeout:.0f} s")
        b.clock.sleep(1)


def recreate_database(b: Bench, leader: str) -> None:
    """``halite_bench`` dropped (its sessions ended) and created empty, on the leader."""
    b.psql(leader, [f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}"])


def prepare_database(b: Bench, leader: str, scale: int) -> dict:
    """``halite_bench`` anew with pgbench's tables at ``scale``: ``{"seconds", "db_bytes", "cluster_bytes"}``."""
    recreate_database(b, leader)
    _, seconds = timed(b, lambda: b.hosts.run(leader, pgbench_init_argv(b.pg_bin, b.socket_dir, b.port, scale),
                                              LOAD_TIMEOUT))
    sizes = b.psql(leader, f"SELECT pg_database_size('{BENCH_DB}'), "
                           "(SELECT sum(pg_database_size(oid)) FROM pg_database)")
    db_bytes, cluster_bytes = (int(x) for x in sizes.split("|"))
    return {"seconds": seconds, "db_bytes": db_bytes, "cluster_bytes": cluster_bytes}


def pgbackrest_backup(b: Bench, kind: str) -> dict:
    """A pgBackRest backup of ``kind`` (full, incr) from the backup host: seconds and its size in the repository."""
    began_epoch = b.clock.time()
    _, seconds = timed(b, lambda: b.hosts.run(b.backup_host, pgbackrest_argv(b.stanza, "backup", [f"--type={kind}"]),
                                              BACKUP_TIMEOUT))
    info = b.hosts.run(b.backup_host, pgbackrest_argv(b.stanza, "info", ["--output=json"])).stdout
    newest = newest_backup(json.loads(info), b.stanza, type=kind, since=began_epoch - 5)
    return {"seconds": seconds, **newest}


def basebackup(b: Bench, leader: str) -> dict:
    """pg_basebackup of the leader, run on a replica: seconds and bytes, then removed."""
    replica = next(h for h in b.db_hosts if h != leader)
    server = formats.conninfo(*formats.server_options(b.data, "postgresql", b.address[leader], b.port))
    argv = basebackup_argv(b.pg_bin, server, b.repl_user)
    b.remove(replica, BASEBACKUP_DIR)
    try:
        # the password in this one process's environment, never on a command line
        _, seconds = timed(b, lambda: b.hosts.run(replica, argv, BACKUP_TIMEOUT,
                                                  env={"PGPASSWORD": b.repl_password}))
        size = b.du(replica, BASEBACKUP_DIR)
    finally:
        b.remove(replica, BASEBACKUP_DIR)
    return {"seconds": seconds, "bytes": size, "host": replica, "from": leader}


def pgbench_writes(b: Bench, leader: str) -> dict:
    """20 s of pgbench on the leader: ``{"seconds", "clients", "tps", "transactions"}``."""
    res = b.hosts.run(leader, pgbench_run_argv(b.pg_bin, b.socket_dir, b.port), PGBENCH_SECONDS + SQL_TIMEOUT)
    return {"seconds": PGBENCH_SECONDS, "clients": PGBENCH_CLIENTS, **parse_pgbench(res.stdout + res.stderr)}


def make_scratch(b: Bench, path: str) -> None:
    """An empty folder owned by postgres (mode 0700) on the backup host."""
    b.remove(b.backup_host, path)
    b.hosts.run(b.backup_host, ["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", path])


def restore_newest(b: Bench) -> dict:
    """The newest backup restored on the backup host into a scratch folder: seconds, bytes, then removed."""
    target = b.scratch(RESTORE_SCRATCH)
    make_scratch(b, target)
    try:
        _, seconds = timed(b, lambda: b.hosts.run(b.backup_host, restore_argv(b.stanza, b.drill_conf, target),
                                                  BACKUP_TIMEOUT))
        size = b.du(b.backup_host, target)
    finally:
        b.remove(b.backup_host, target)
    return {"seconds": seconds, "bytes": size, "seconds_per_gb": seconds_per_gb(seconds, size)}


def measure_scale(b: Bench, scale: int) -> dict:
    """Every backup measurement of one pgbench scale, in one run (see the module's docstring)."""
    leader = b.leader()
    b.say(f"scale {scale}: {BENCH_DB} anew on {leader} (pgbench -i -s {scale})")
    prepared = prepare_database(b, leader, scale)
    b.say(f"scale {scale}: {fmt_bytes(prepared['db_bytes'])} loaded in {fmt_seconds(prepared['seconds'])}; "
          f"whole cluster {fmt_bytes(prepared['cluster_bytes'])}")
    wait_replicas(b, leader)
    full = pgbackrest_backup(b, "full")
    b.say(f"scale {scale}: pgBackRest full {full['label']} in {fmt_seconds(full['seconds'])}, "
          f"{fmt_bytes(full['repo_bytes'])} in the repository")
    base = basebackup(b, leader)
    b.say(f"scale {scale}: pg_basebackup on {base['host']} from {leader} in {fmt_seconds(base['seconds'])}, "
          f"{fmt_bytes(base['bytes'])}")
    b.say(f"scale {scale}: pgbench -T {PGBENCH_SECONDS} -c {PGBENCH_CLIENTS} on {leader}")
    writes = pgbench_writes(b, leader)
    wait_replicas(b, leader)
    incr = pgbackrest_backup(b, "incr")
    b.say(f"scale {scale}: after {writes.get('tps')} tps, incremental {incr['label']} in "
          f"{fmt_seconds(incr['seconds'])}, {fmt_bytes(incr['repo_bytes'])} in the repository")
    restored = restore_newest(b)
    b.say(f"scale {scale}: restore of {incr['label']} in {fmt_seconds(restored['seconds'])}, "
          f"{fmt_bytes(restored['bytes'])} ({restored['seconds_per_gb']} s per GB)")
    entry = {"scale": scale, "leader": leader, **{k: prepared[k] for k in ("db_bytes", "cluster_bytes")},
             "load_seconds": prepared["seconds"], "full": full, "basebackup": base, "writes": writes,
             "incr": incr, "restore": {**restored, "set": incr["label"]}}
    entry["ratios"] = scale_ratios(entry)
    return entry


# --------------------------------------------------------------------------
# RPO
# --------------------------------------------------------------------------


class Writer:
    """The RPO writer inside the leader; its output read by a thread as it comes."""

    def __init__(self, b: Bench, host: str, seconds: float):
        self.b, self.host = b, host
        self.argv = writer_argv(b.pg_bin, b.socket_dir, b.port, seconds)
        self.lines: list[str] = []
        self.pgid: int | None = None
        self.first_ack = threading.Event()
        self.proc = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.proc = self.b.hosts.start(self.host, self.argv)
        self.thread = threading.Thread(target=self._read, name="rpo-writer", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            self.lines.append(line)
            if line.startswith("pgid ") and line[5:].isdigit():
                self.pgid = int(line[5:])
            elif _ACK.match(line):
                self.first_ack.set()

    def acks(self) -> list[Ack]:
        return parse_acks(list(self.lines))

    def wait_first_ack(self, timeout: float | None = None) -> None:
        timeout = FIRST_ACK_TIMEOUT if timeout is None else timeout
        if not self.first_ack.wait(timeout):
            said = " | ".join(self.lines[-3:]) or "nothing"
            raise RuntimeError(f"{self.host}: the RPO writer acknowledged no commit within {timeout:.0f} s "
                               f"(it said: {said})")

    def finish(self, timeout: float = 30) -> list[Ack]:
        """Every acknowledgement, once its output has ended (the host is off) or ``timeout`` has passed."""
        if self.thread:
            self.thread.join(timeout)
        return self.acks()

    def stop(self) -> None:
        """Stop it if it still runs: its process group inside the host, then the local nsenter, by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.pgid:
            try:
                self.b.hosts.run(self.host, ["kill", "-TERM", "--", f"-{self.pgid}"], timeout=10, check=False)
            except RuntimeError:
                pass  # the host is off: nothing of it runs
        self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def rpo_setup(b: Bench) -> None:
    """``halite_bench`` emptied and an incremental backup taken, so the restores of the runs are small."""
    leader = b.leader()
    b.say(f"RPO: {BENCH_DB} emptied on {leader}, then an incremental backup")
    recreate_database(b, leader)
    wait_replicas(b, leader)
    incr = pgbackrest_backup(b, "incr")
    b.say(f"RPO: incremental {incr['label']} in {fmt_seconds(incr['seconds'])}")


def rpo_baseline(b: Bench, leader: str) -> dict:
    """Table ``rpo`` anew with one row, the WAL switched and archived: ``{"id", "t", "segment"}``."""
    row = b.psql(leader, ["DROP TABLE IF EXISTS rpo",
                          "CREATE TABLE rpo (id bigserial PRIMARY KEY, t timestamptz DEFAULT clock_timestamp())",
                          "INSERT INTO rpo DEFAULT VALUES RETURNING id, extract(epoch FROM t)"], database=BENCH_DB)
    baseline = parse_acks(row.splitlines())
    if not baseline:
        raise RuntimeError(f"{leader}: the baseline row of rpo was not returned (got {row[:100]!r})")
    segment = b.psql(leader, "SELECT pg_walfile_name(pg_switch_wal())")
    began = b.clock.monotonic()
    while True:
        archived = b.psql(leader, "SELECT coalesce(last_archived_wal, '') || '|' || coalesce(last_failed_wal, '') "
                                  "FROM pg_stat_archiver")
        last, _, failed = archived.partition("|")
        if archived_since(last, segment):
            break
        if b.clock.monotonic() - began > ARCHIVE_TIMEOUT:
            raise RuntimeError(f"{leader}: WAL segment {segment} did not reach the repository within "
                               f"{ARCHIVE_TIMEOUT} s (last archived {last or 'none'}, last failed {failed or 'none'})")
        b.clock.sleep(0.5)
    return {"id": baseline[-1].id, "t": baseline[-1].t, "segment": segment}


def start_scratch_server(b: Bench, home: str, data: str) -> None:
    """The restored copy started alone: our config, a Unix socket in ``home``, no TCP, no archiving."""
    control = b.hosts.run(b.backup_host, as_postgres([f"{b.backup_bin}/pg_controldata", data])).stdout
    settings = scratch_settings(home, b.scratch_port, controldata_minimums(control))
    files = {f"{home}/{SCRATCH_CONF}": conf_text(settings), f"{home}/pg_hba.conf": "local all postgres peer\n",
             f"{home}/pg_ident.conf": ""}
    for path, text in files.items():
        b.hosts.run(b.backup_host, ["sh", "-c", 'umask 077; cat > "$1"; chown postgres:postgres "$1"', "sh", path],
                    input=text)
    b.hosts.run(b.backup_host, as_postgres([f"{b.backup_bin}/pg_ctl", "-D", data, "-l", f"{home}/postgresql.log",
                                            "-W", "-o", scratch_options(f"{home}/{SCRATCH_CONF}", settings),
                                            "start"]))


def scratch_psql(b: Bench, home: str, database: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
    """psql against the restored copy, over its socket in ``home``."""
    return b.hosts.run(b.backup_host, psql_argv(b.backup_bin, home, b.scratch_port, database, sql), check=check)


def wait_out_of_recovery(b: Bench, home: str, data: str, timeout: float = RECOVERY_TIMEOUT) -> None:
    """Until the copy answers and is no longer in recovery; its log's last lines if it stopped."""
    began = b.clock.monotonic()
    while b.clock.monotonic() - began < timeout:
        if scratch_psql(b, home, "postgres", "SELECT pg_is_in_recovery()", check=False).stdout.strip() == "f":
            return
        status = b.hosts.run(b.backup_host, as_postgres([f"{b.backup_bin}/pg_ctl", "-D", data, "status"]),
                             check=False)
        if status.returncode == 3:  # no server running
            tail = b.hosts.run(b.backup_host, ["tail", "-n", "3", f"{home}/postgresql.log"], check=False).stdout
            raise RuntimeError(f"{b.backup_host}: the restored copy stopped during recovery: "
                               f"{' | '.join(tail.strip().splitlines())}")
        b.clock.sleep(1)
    raise RuntimeError(f"{b.backup_host}: the restored copy was still in recovery after {timeout:.0f} s")


#: SIGKILL to the postmaster of "$1" by its postmaster.pid, only if that PID is
#: still a postgres of that data directory (a stale file's PID may be another process now).
KILL_SCRIPT = r"""
p=$(head -n 1 "$1/postmaster.pid" 2>/dev/null) || exit 0
[ -n "$p" ] && [ -r "/proc/$p/cmdline" ] || exit 0
tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF -- "-D $1" || exit 0
kill -KILL "$p"
"""


def stop_scratch_server(b: Bench, data: str) -> None:
    """Stopped by pg_ctl (immediate), then by the PID in its postmaster.pid if it still runs."""
    b.hosts.run(b.backup_host, as_postgres([f"{b.backup_bin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "60",
                                            "stop"]), timeout=90, check=False)
    b.hosts.run(b.backup_host, ["sh", "-c", KILL_SCRIPT, "sh", data], check=False)


def restore_latest(b: Bench) -> dict:
    """The repository's latest state restored, started alone, read: ``{"id", "t", "rows", "restore_seconds",
    "recovery_seconds"}``; always stopped and removed."""
    home = b.scratch(RPO_SCRATCH)
    data = f"{home}/data"
    stop_scratch_server(b, data)  # left by an interrupted run
    make_scratch(b, home)
    try:
        b.hosts.run(b.backup_host, ["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", data])
        _, restore_s = timed(b, lambda: b.hosts.run(
            b.backup_host, restore_argv(b.stanza, b.drill_conf, data, type="default"), BACKUP_TIMEOUT))
        began = b.clock.monotonic()
        start_scratch_server(b, home, data)
        wait_out_of_recovery(b, home, data)
        recovery_s = round(b.clock.monotonic() - began, 3)
        row = scratch_psql(b, home, BENCH_DB, "SELECT max(id), extract(epoch FROM max(t)), count(*) FROM rpo").stdout
        last_id, last_t, rows = row.strip().split("|")
        if not last_id:
            raise RuntimeError(f"{b.backup_host}: the restored rpo table is empty, not even the baseline row")
        return {"id": int(last_id), "t": float(last_t), "rows": int(rows), "restore_seconds": restore_s,
                "recovery_seconds": recovery_s}
    finally:
        stop_scratch_server(b, data)
        b.remove(b.backup_host, home)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="milliseconds")


def rpo_run(b: Bench, run: int, runs: int, fixed_seconds: float | None = None) -> dict:
    """One power cut of every db host under a trickle of writes, and what the repository kept of them."""
    seconds = write_seconds(run, runs, b.archive_timeout, fixed_seconds)
    wait_cluster_whole(b)
    leader = b.leader()
    baseline = rpo_baseline(b, leader)
    b.say(f"RPO run {run + 1}/{runs}: baseline row {baseline['id']} archived in {baseline['segment']}; "
          f"writing on {leader} for {seconds:.0f} s, then every db host loses power")
    writer = Writer(b, leader, seconds)
    powered_off, on_at = False, 0.0
    try:
        writer.start()
        writer.wait_first_ack()
        began = b.clock.monotonic()
        b.clock.sleep(seconds)
        cut = round(b.clock.monotonic() - began, 1)
        b.power_off(list(b.db_hosts))
        powered_off = True
        acks = writer.finish()
        b.say(f"RPO run {run + 1}/{runs}: power cut after {cut:.0f} s of writes, "
              f"{len(acks)} commits acknowledged (last id {acks[-1].id if acks else '–'}); restoring the latest state")
        restored = restore_latest(b)
    finally:
        writer.stop()
        if powered_off:
            b.say(f"RPO run {run + 1}/{runs}: powering the db hosts on")
            on_at = b.clock.monotonic()
            b.power_on(list(b.db_hosts))
    # reached only after the power cut and the power-on (a failure before has been raised)
    booting = b.clock.monotonic() - on_at  # powered on, until every sshd answered
    heal = round(booting + wait_cluster_whole(b), 1)
    result = rpo_result(acks, restored["id"], restored["t"])
    b.say(f"RPO run {run + 1}/{runs}: restored up to id {restored['id']}: {result['rows_lost']} acknowledged rows "
          f"lost, RPO {result['seconds']:.1f} s; cluster whole again {heal:.0f} s after the power-on")
    return {"run": run + 1, "leader": leader, "write_seconds": cut, "planned_write_seconds": seconds,
            "baseline_id": baseline["id"], "baseline_segment": baseline["segment"], **result,
            "last_acked_at": _iso(result["last_acked_t"]), "restored_at": _iso(result["restored_t"]),
            "restored_rows": restored["rows"], "restore_seconds": restored["restore_seconds"],
            "recovery_seconds": restored["recovery_seconds"], "heal_seconds": heal}


# --------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------


def _terminate(signum, frame):  # noqa: ARG001
    """SIGTERM as Ctrl-C: every ``finally`` runs (hosts powered on, copies stopped and removed)."""
    raise KeyboardInterrupt(f"signal {signum}")


def run(b: Bench, args: argparse.Namespace, results: dict) -> dict:
    """Every scale, then every RPO run; results written after each step (an interruption keeps them)."""
    try:
        wait_cluster_whole(b)
        for scale in args.scales:
            results["scales"].append(measure_scale(b, scale))
            write_results(results, args.out)
        if args.rpo_runs:
            rpo_setup(b)
            runs: list[dict] = []
            for n in range(args.rpo_runs):
                runs.append(rpo_run(b, n, args.rpo_runs, args.rpo_write_seconds))
                results["rpo"] = rpo_summary(runs, b.archive_timeout)
                write_results(results, args.out)
    finally:
        if not args.keep_database:
            try:
                b.psql(b.leader(), f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
                b.say(f"{BENCH_DB} dropped")
            except Exception as exc:  # noqa: BLE001 - the results matter more; say what was left
                b.say(f"{BENCH_DB} not dropped ({exc}); drop it by hand")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # a stopped make still powers the hosts back on
    data = config.load()
    b = Bench(data)
    results = new_results(data)
    log(f"scales {', '.join(map(str, args.scales)) or 'none'}, {args.rpo_runs} RPO runs; results in {args.out}")
    run(b, args, results)
    paths = write_results(results, args.out)
    print(markdown(results))
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
