"""
pgBackRest, through its own command line: backups, the WAL archive, whether
the last backup is fresh, restore points, point-in-time recovery and the
restore drill.

* Reading: :func:`info`, :func:`last_backup`, :func:`age`, :func:`check`,
  :func:`archive_status`, :func:`health`.
* Backing up: :func:`stanza_create`, :func:`backup`.
* Restore points: :func:`restore_point` (on the primary: a named point in
  the WAL and the checksums of every table at that point),
  kept with the cluster in ``halite.restore_points`` (:func:`restore_points`
  reads them, from any member).
* Recovering: :func:`check_target` (refuses an unreachable target before
  anything changes), :func:`restore`, and :func:`drill` (restores into a
  scratch folder, starts it alone, compares the checksums, removes it).

Every function runs the ``pgbackrest`` binary with an argument list (never
through a shell) and reads its JSON output (``--output=json``), which
pgBackRest keeps stable across releases. Only the Python standard library is
used, so the module runs wherever salt-ssh's thin runs.

pgBackRest runs as ``runas`` (default ``postgres``, the owner of the
repository and of pgBackRest's lock files: run as root it would leave
root-owned files that later stop ``archive-push``). Every function takes
these keywords:

==========  ================================================  ===================
keyword     meaning                                           default
==========  ================================================  ===================
stanza      the stanza (pgBackRest's name for one cluster)    (all, for ``info``)
config      pgbackrest.conf (``--config``), an absolute path  pgBackRest's own
runas       operating-system user that runs pgbackrest        postgres
timeout     seconds one pgbackrest call may take              120 (check: 300)
==========  ================================================  ===================

Every failure (pgbackrest not installed, a non-zero exit, output that is not
the JSON expected, an unknown stanza) raises
:class:`salt.exceptions.CommandExecutionError` with pgBackRest's own message.

Read with pgBackRest 2.45 (Debian 12); the JSON keys used are listed at
:func:`_backup`, :func:`_stanza` and :func:`archive_status`.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time

from salt.exceptions import CommandExecutionError

try:
    # pg_move.py ships beside this file (salt-ssh syncs _modules/ together, and
    # Salt's loader puts this file's folder on sys.path while it imports it):
    # its psql boundary and table checksums are shared here, not copied.
    import pg_move
except ImportError:  # pragma: no cover - only when _modules/ was copied in part
    pg_move = None

log = logging.getLogger(__name__)

__virtualname__ = "pgbackrest"

#: The binary, looked up in PATH.
PGBACKREST = "pgbackrest"
DEFAULT_RUNAS = "postgres"
DEFAULT_TIMEOUT = 120
#: ``pgbackrest check`` waits up to its archive-timeout (60 s) for a WAL segment.
CHECK_TIMEOUT = 300
#: PostgreSQL's default WAL segment size (initdb --wal-segsize), in bytes.
WAL_SEGMENT_SIZE = 16 * 1024 * 1024
#: pgBackRest's stanza status codes (src/command/info/info.c).
STATUS_OK = 0
STATUS_MISSING_STANZA_PATH = 1
STATUS_NO_BACKUP = 2
#: A WAL segment file in the archive: name, then "-" and its SHA-1, then the
#: compression extension if any. ``.partial`` and ``.history`` files do not match.
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})-[0-9a-f]{40}(\.[a-z0-9]+)?$")
_WAL_NAME = re.compile(r"^[0-9A-F]{24}$")


def __virtual__():
    """Load on any Python 3.8+ (standard library only) with pg_move.py beside it.

    The binary is looked for on each call, so that a host without pgBackRest
    gets a sentence saying so rather than "pgbackrest.info is not available".
    """
    if sys.version_info < (3, 8):
        return (False, "the pgbackrest module needs Python 3.8 or newer")
    if pg_move is None:
        return (False, "the pgbackrest module needs _modules/pg_move.py beside it (its psql boundary)")
    return __virtualname__


# ---------------------------------------------------------------------------
# pgbackrest boundary
# ---------------------------------------------------------------------------


def _argv(command: str, stanza, config, options=(), args=()) -> list[str]:
    """``pgbackrest [--config=...] [--stanza=...] [options] command [args]`` as a list."""
    argv = [PGBACKREST]
    if config:
        if not str(config).startswith("/"):
            # pgBackRest reads a relative --config from its working directory, which is /
            raise CommandExecutionError(f"pgbackrest: config must be an absolute path, not {config!r}")
        argv.append(f"--config={config}")
    if stanza:
        argv.append(f"--stanza={stanza}")
    argv.extend(options)
    argv.append(command)
    argv.extend(args)
    return argv


def _run(command: str, stanza=None, config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT, options=(),
         args=()) -> str:
    """Run one pgbackrest command; return its standard output.

    :raises CommandExecutionError: pgbackrest missing, not startable, too slow,
        or exiting non-zero (with pgBackRest's ``ERROR: [code]: message``).
    """
    argv = _argv(command, stanza, config, options, args)
    where = f"pgbackrest {command}" + (f" (stanza {stanza})" if stanza else "")
    if shutil.which(PGBACKREST) is None:
        raise CommandExecutionError(
            f"{where}: pgBackRest is not installed here (no {PGBACKREST} in PATH {os.environ.get('PATH', '')}); "
            "install the pgbackrest package")
    if runas and runas != pwd.getpwuid(os.geteuid()).pw_name:
        if os.geteuid() != 0:
            raise CommandExecutionError(f"{where}: cannot run pgbackrest as {runas}: not root")
        argv = ["runuser", "-u", runas, "--", *argv]
    log.debug("pgbackrest: %s", argv)
    try:
        # errors="replace": a wrong passphrase makes pgBackRest quote decrypted garbage
        res = subprocess.run(argv, capture_output=True, text=True, errors="replace", cwd="/", timeout=float(timeout),
                             check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(f"{where}: no answer within {float(timeout):.0f} s") from exc
    except OSError as exc:
        raise CommandExecutionError(f"{where}: cannot run {argv[0]}: {exc}") from exc
    if res.returncode != 0:
        err = (res.stderr.strip() or res.stdout.strip() or "(no message)")
        raise CommandExecutionError(f"{where} failed (exit {res.returncode}): {err}")
    return res.stdout


def _json(command: str, stanza, config, runas, timeout, options=(), args=()):
    out = _run(command, stanza, config, runas, timeout, ("--output=json", *options), args)
    try:
        # strict=False: with a wrong passphrase pgBackRest 2.45 quotes the decrypted
        # garbage, control characters included, unescaped inside a JSON string
        return json.loads(out, strict=False)
    except ValueError as exc:
        raise CommandExecutionError(
            f"pgbackrest {command}: the output is not JSON ({exc}): {out.strip()[:300]!r}") from exc


# ---------------------------------------------------------------------------
# parsing pgbackrest info --output=json
# ---------------------------------------------------------------------------


def lsn(text):
    """A PostgreSQL LSN (``"0/5000028"``) as an integer, or None."""
    if not isinstance(text, str) or "/" not in text:
        return None
    high, low = text.split("/", 1)
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _backup(raw: dict) -> dict:
    """One backup from ``info``'s ``backup`` list.

    pgBackRest keys read: ``label``, ``type``, ``timestamp.start/stop`` (epoch
    seconds), ``info.size`` (database size), ``info.delta`` (database backup
    size: what this backup copied), ``info.repository.size`` (backup set size
    in the repository, compressed, with the backups it references) and
    ``.delta`` (this backup's own files there), ``archive.start/stop`` (the WAL
    needed to make it consistent), ``lsn.start/stop`` (2.37 and later),
    ``prior``, ``reference``, ``error`` (page checksum errors found, 2.36 and
    later), ``database.id``, ``database.repo-key``, ``backrest.version``.
    """
    stamp, info, wal, lsns = (_dict(raw.get(k)) for k in ("timestamp", "info", "archive", "lsn"))
    repo, database = _dict(info.get("repository")), _dict(raw.get("database"))
    start, stop = stamp.get("start"), stamp.get("stop")
    return {
        "label": raw.get("label"),
        "type": raw.get("type"),
        "start": start,
        "stop": stop,
        "duration": stop - start if isinstance(start, int) and isinstance(stop, int) else None,
        "database_size": info.get("size"),
        "backup_size": info.get("delta"),
        "repo_size": repo.get("size"),
        "repo_backup_size": repo.get("delta"),
        "wal_start": wal.get("start"),
        "wal_stop": wal.get("stop"),
        "lsn_start": lsns.get("start"),
        "lsn_stop": lsns.get("stop"),
        "prior": raw.get("prior"),
        "reference": raw.get("reference") or [],
        "error": bool(raw.get("error")),
        "db_id": database.get("id"),
        "repo": database.get("repo-key"),
        "pgbackrest_version": _dict(raw.get("backrest")).get("version"),
    }


def _stanza(raw: dict) -> dict:
    """One stanza from ``info``: its status, databases, archives and backups.

    pgBackRest keys read: ``name``, ``status.code/message``,
    ``status.lock.backup.held`` (a backup or expire is running), ``cipher``,
    ``db[].id/version/system-id/repo-key``, ``repo[].key/cipher/status``,
    ``archive[].id/min/max/database.id/database.repo-key``, ``backup[]``
    (see :func:`_backup`), listed oldest first.
    """
    status = _dict(raw.get("status"))
    backups = [_backup(b) for b in raw.get("backup") or [] if isinstance(b, dict)]
    backups.sort(key=lambda b: (b["stop"] or 0, b["label"] or ""))
    return {
        "name": raw.get("name"),
        "status": {"code": status.get("code"), "message": status.get("message")},
        "ok": status.get("code") == STATUS_OK,
        "backup_running": bool(_dict(_dict(status.get("lock")).get("backup")).get("held")),
        "cipher": raw.get("cipher"),
        "db": [{"id": d.get("id"), "version": d.get("version"), "system_id": d.get("system-id"),
                "repo": d.get("repo-key")} for d in raw.get("db") or [] if isinstance(d, dict)],
        "repos": [{"key": r.get("key"), "cipher": r.get("cipher"),
                   "status": {"code": _dict(r.get("status")).get("code"),
                              "message": _dict(r.get("status")).get("message")}}
                  for r in raw.get("repo") or [] if isinstance(r, dict)],
        "archive": [{"id": a.get("id"), "db_id": _dict(a.get("database")).get("id"),
                     "repo": _dict(a.get("database")).get("repo-key"), "min": a.get("min"), "max": a.get("max")}
                    for a in raw.get("archive") or [] if isinstance(a, dict)],
        "backups": backups,
    }


def parse_info(data, stanza=None) -> list[dict]:
    """Turn ``pgbackrest info --output=json`` (already decoded) into stanza records.

    :param data: the decoded JSON: a list with one object per stanza.
    :param stanza: the stanza asked for, or None for all.
    :returns: list of stanza records (see :func:`info`).
    :raises CommandExecutionError: when the JSON is not a list of stanzas, or
        ``stanza`` is unknown to the repository (status 1, "missing stanza path").
    """
    if not isinstance(data, list) or not all(isinstance(s, dict) and "name" in s for s in data):
        raise CommandExecutionError(f"pgbackrest info: the JSON is not a list of stanzas: {str(data)[:300]}")
    stanzas = [_stanza(s) for s in data]
    if stanza is not None:
        stanzas = [s for s in stanzas if s["name"] == stanza]
        if not stanzas:
            raise CommandExecutionError(f"pgbackrest info: stanza {stanza!r} is not in pgBackRest's answer")
        if stanzas[0]["status"]["code"] == STATUS_MISSING_STANZA_PATH:
            raise CommandExecutionError(
                f"pgbackrest info: stanza {stanza!r}: {stanzas[0]['status']['message']} "
                "(unknown stanza: is the name right, and has stanza-create run?)")
    return stanzas


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------


def info(stanza=None, config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT) -> list[dict]:
    """Stanzas, their status and their backups (``pgbackrest info --output=json``).

    Each stanza is a dict with ``name``, ``status`` (``code`` and ``message``:
    0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, ...),
    ``ok``, ``backup_running``, ``cipher``, ``db`` (id, version, system_id,
    repo), ``repos`` (key, cipher, status), ``archive`` (one per database id:
    id such as ``15-1``, db_id, repo, ``min`` and ``max`` WAL segment names)
    and ``backups``, oldest first, each with ``label``, ``type`` (full, diff,
    incr), ``start``, ``stop`` (epoch seconds), ``duration`` (seconds),
    ``database_size``, ``backup_size``, ``repo_size``, ``repo_backup_size``
    (bytes), ``wal_start``, ``wal_stop``, ``lsn_start``, ``lsn_stop`` (None
    before pgBackRest 2.37), ``prior``, ``reference``, ``error`` (page checksum
    errors), ``db_id``, ``repo`` and ``pgbackrest_version``.

    :param stanza: one stanza, or None for every stanza in the configuration.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: list of stanza dicts.
    :raises CommandExecutionError: see the module docstring; also for a stanza
        the repository does not know.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.info
        salt-ssh db-01 pgbackrest.info stanza=halite config=/etc/pgbackrest/pgbackrest.conf
    """
    return parse_info(_json("info", stanza, config, runas, timeout), stanza)


def _one(stanza, config, runas, timeout) -> dict:
    if not stanza:
        raise CommandExecutionError("pgbackrest: a stanza name is needed")
    return info(stanza, config, runas, timeout)[0]


def last_of(record: dict):
    """The newest backup of a stanza record (any type), or None."""
    return record["backups"][-1] if record["backups"] else None


def last_backup(stanza, config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT):
    """The newest backup of a stanza, of any type (full, diff or incr).

    pgBackRest lists only backups that completed; an interrupted one is not
    there. A backup that found page checksum errors is listed, with ``error``
    True.

    :param stanza: the stanza.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: a backup dict (see :func:`info`), or None when there is no backup yet.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.last_backup stanza=halite
    """
    return last_of(_one(stanza, config, runas, timeout))


def age(stanza, config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT):
    """Seconds since the newest backup of a stanza stopped.

    :param stanza: the stanza.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: whole seconds (0 at least), or None when there is no backup yet.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.age stanza=halite
    """
    return _age(last_backup(stanza, config, runas, timeout))


def _age(backup):
    if not backup or not isinstance(backup.get("stop"), int):
        return None
    return max(0, int(time.time()) - backup["stop"])


def _stanza_command(command: str, stanza, config, runas, timeout) -> bool:
    """Run a pgbackrest command that only succeeds or fails (check, stanza-create) on one stanza."""
    if not stanza:
        raise CommandExecutionError(f"pgbackrest {command}: a stanza name is needed")
    _run(command, stanza, config, runas, timeout)
    return True


def check(stanza, config=None, runas=DEFAULT_RUNAS, timeout=CHECK_TIMEOUT) -> bool:
    """Run ``pgbackrest check``: configuration, repository and WAL archiving.

    On the primary it forces a WAL switch and waits (pgBackRest's
    archive-timeout, 60 s by default) for that segment to reach the
    repository, so it proves that ``archive_command`` works now.

    :param stanza: the stanza.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: True.
    :raises CommandExecutionError: with pgBackRest's message when a check fails.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.check stanza=halite
    """
    return _stanza_command("check", stanza, config, runas, timeout)


def segment_number(name: str, wal_segment_size: int = WAL_SEGMENT_SIZE) -> int:
    """The position of a WAL segment (``000000010000000A000000FF``), timeline left out."""
    per_log = 0x100000000 // int(wal_segment_size)
    return int(name[8:16], 16) * per_log + int(name[16:24], 16)


def segment_name(timeline: int, number: int, wal_segment_size: int = WAL_SEGMENT_SIZE) -> str:
    """The WAL file name of segment ``number`` on ``timeline``."""
    per_log = 0x100000000 // int(wal_segment_size)
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def gaps_in(files, start=None, wal_segment_size: int = WAL_SEGMENT_SIZE) -> dict:
    """Find missing WAL segments in an archive listing.

    A segment counts as present when any timeline holds it in full, so the
    switch to a new timeline (after a failover) is no gap.

    :param files: file names (paths allowed) as in the archive.
    :param start: segment name to check from (older segments are ignored), or None for the oldest present.
    :param wal_segment_size: bytes.
    :returns: dict with ``segments`` (count checked), ``first``, ``last`` (names)
        and ``gaps``: list of ``{"from", "to", "count"}``.
    """
    present = {}
    for path in files:
        m = _SEGMENT.match(str(path).rsplit("/", 1)[-1])
        if m:
            number = segment_number(m.group(1) + m.group(2) + m.group(3), wal_segment_size)
            present.setdefault(number, int(m.group(1), 16))
    begin = segment_number(start, wal_segment_size) if start else (min(present) if present else None)
    numbers = sorted(n for n in present if begin is None or n >= begin)
    out = {"segments": len(numbers), "first": None, "last": None, "gaps": []}
    if not numbers:
        return out
    timeline = present[numbers[0]]
    out["first"] = segment_name(timeline, begin, wal_segment_size)
    out["last"] = segment_name(present[numbers[-1]], numbers[-1], wal_segment_size)
    expected = begin
    for number in numbers:
        if number > expected:
            out["gaps"].append({"from": segment_name(timeline, expected, wal_segment_size),
                                "to": segment_name(timeline, number - 1, wal_segment_size),
                                "count": number - expected})
        timeline, expected = present[number], number + 1
    return out


def _current_archive(record: dict):
    """The archive of the stanza's current database (the highest database id)."""
    archives = [a for a in record["archive"] if a.get("id")]
    return max(archives, key=lambda a: a.get("db_id") or 0) if archives else None


def archive_status(stanza, wal_segment_size=WAL_SEGMENT_SIZE, config=None, runas=DEFAULT_RUNAS,
                   timeout=DEFAULT_TIMEOUT) -> dict:
    """Whether the WAL archive of the stanza's current database is continuous.

    Lists the archive (``pgbackrest repo-ls --recurse --output=json
    archive/STANZA/ARCHIVE_ID``: keys are paths, values have ``type``,
    ``size`` and ``time``) and looks for missing segments from the WAL start
    of the oldest backup on that database (what point-in-time recovery from
    any backup needs) up to the newest segment archived. With no backup yet it
    checks from the oldest segment present. pgBackRest's ``info`` gives only
    min and max ("there may be gaps"), hence the listing.

    :param stanza: the stanza.
    :param wal_segment_size: PostgreSQL's WAL segment size, in bytes (initdb's --wal-segsize).
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: dict with ``archive_id``, ``min``, ``max`` (from ``info``),
        ``checked_from``, ``segments``, ``last`` (newest segment),
        ``last_age`` (seconds since it reached the repository), ``gaps``
        (list of ``{"from", "to", "count"}``) and ``continuous``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.archive_status stanza=halite
    """
    return _archive_status(_one(stanza, config, runas, timeout), wal_segment_size, config, runas, timeout)


def _archive_status(record: dict, wal_segment_size, config, runas, timeout) -> dict:
    """:func:`archive_status` of a stanza record already read."""
    stanza = record["name"]
    archive = _current_archive(record)
    out = {"archive_id": None, "min": None, "max": None, "checked_from": None, "segments": 0, "last": None,
           "last_age": None, "gaps": [], "continuous": False}
    if archive is None:
        return out
    out.update(archive_id=archive["id"], min=archive["min"], max=archive["max"])
    if not archive["max"]:
        return out
    listing = _json("repo-ls", stanza, config, runas, timeout,
                    ("--recurse",), (f"archive/{stanza}/{archive['id']}",))
    if not isinstance(listing, dict):
        raise CommandExecutionError(f"pgbackrest repo-ls: the JSON is not a mapping of paths: {str(listing)[:300]}")
    files = {path: meta for path, meta in listing.items() if _dict(meta).get("type") == "file"}
    starts = [b["wal_start"] for b in record["backups"]
              if b["db_id"] == archive["db_id"] and isinstance(b["wal_start"], str) and _WAL_NAME.match(b["wal_start"])]
    found = gaps_in(files, min(starts, key=lambda n: segment_number(n, wal_segment_size)) if starts else None,
                    wal_segment_size)
    newest = [meta.get("time") for path, meta in files.items()
              if found["last"] and path.rsplit("/", 1)[-1].startswith(found["last"] + "-")]
    out.update(checked_from=found["first"], segments=found["segments"], last=found["last"], gaps=found["gaps"],
               last_age=max(0, int(time.time()) - newest[0]) if newest and isinstance(newest[0], int) else None,
               continuous=bool(found["segments"]) and not found["gaps"])
    return out


def _duration(seconds) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"


def health(stanza, max_age=None, check=False, wal_segment_size=WAL_SEGMENT_SIZE,  # pylint: disable=redefined-outer-name
           config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT) -> dict:
    """Summarise whether the stanza's backups can be relied on now.

    Healthy means: pgBackRest's stanza status is ok (code 0); there is a
    backup, younger than ``max_age`` seconds when given, that found no page
    checksum errors; the WAL archive has no gap since the oldest backup (see
    :func:`archive_status`); and, with ``check``, ``pgbackrest check`` passes.
    The check runs only when everything else is fine: it forces a WAL switch.

    :param stanza: the stanza.
    :param max_age: largest acceptable age of the newest backup, in seconds; None to not check it.
    :param check: also run :func:`check`.
    :param wal_segment_size: PostgreSQL's WAL segment size, in bytes.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds for each pgbackrest call.
    :returns: dict with ``healthy``, ``problems`` (sentences), ``stanza``, ``status``,
        ``backups`` (count), ``backup_running``, ``last_backup`` (label), ``last_type``,
        ``age`` (seconds or None), ``archive`` (see :func:`archive_status`) and
        ``checked`` (True when ``pgbackrest check`` ran and passed).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.health stanza=halite max_age=93600
        salt-ssh db-01 pgbackrest.health stanza=halite check=True
    """
    record = _one(stanza, config, runas, timeout)
    last = last_of(record)
    seconds = _age(last)
    archive = _archive_status(record, wal_segment_size, config, runas, timeout)
    problems = []
    if not record["ok"]:
        status = record["status"]
        problems.append(f"stanza {stanza}: {status['message']} (pgBackRest status {status['code']})")
        # status 99 says only "other": the reason is in the repository's status
        problems.extend(f"repo{r['key']}: {r['status']['message']}" for r in record["repos"]
                        if r["status"]["code"] != STATUS_OK and r["status"]["message"] != record["status"]["message"])
    if last is None:
        if record["status"]["code"] != STATUS_NO_BACKUP:
            problems.append("no backup yet")
    else:
        if max_age is not None and (seconds is None or seconds > int(max_age)):
            shown = "at an unknown time" if seconds is None else f"{_duration(seconds)} ago"
            problems.append(f"last backup {last['label']} ({last['type']}) finished {shown}, "
                            f"more than {_duration(max_age)}")
        if last["error"]:
            problems.append(f"last backup {last['label']} found page checksum errors "
                            f"(pgbackrest info --set={last['label']})")
    if archive["gaps"]:
        shown = ", ".join(f"{g['from']}..{g['to']}" if g["count"] > 1 else g["from"] for g in archive["gaps"][:5])
        more = f" and {len(archive['gaps']) - 5} more" if len(archive["gaps"]) > 5 else ""
        missing = sum(g["count"] for g in archive["gaps"])
        problems.append(f"WAL archive {archive['archive_id']} misses {missing} segment(s): {shown}{more}")
    elif not archive["continuous"]:
        problems.append(f"WAL archive {archive['archive_id'] or '(none)'} holds no segment yet")
    checked = False
    if check and not problems:
        try:
            _run("check", stanza, config, runas, CHECK_TIMEOUT)
        except CommandExecutionError as exc:
            problems.append(str(exc))
        else:
            checked = True
    return {
        "healthy": not problems,
        "problems": problems,
        "stanza": stanza,
        "status": record["status"],
        "backups": len(record["backups"]),
        "backup_running": record["backup_running"],
        "last_backup": last["label"] if last else None,
        "last_type": last["type"] if last else None,
        "age": seconds,
        "archive": archive,
        "checked": checked,
    }


# ---------------------------------------------------------------------------
# backing up
# ---------------------------------------------------------------------------

#: A backup or a restore of a large cluster takes a while (seconds).
BACKUP_TIMEOUT = 7200
BACKUP_TYPES = ("full", "diff", "incr")


def stanza_create(stanza, config=None, runas=DEFAULT_RUNAS, timeout=DEFAULT_TIMEOUT) -> bool:
    """Create the stanza in the repository (``pgbackrest stanza-create``).

    Idempotent: on a stanza that exists and matches the cluster pgBackRest
    says so and succeeds. Run where pgBackRest reaches the primary.

    :param stanza: the stanza.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :returns: True.
    :raises CommandExecutionError: with pgBackRest's message (e.g. the stanza
        exists for another cluster: a different system identifier).

    CLI Example:

    .. code-block:: bash

        salt-ssh backup-01 pgbackrest.stanza_create stanza=halite
    """
    return _stanza_command("stanza-create", stanza, config, runas, timeout)


def backup(stanza, type="incr", config=None, runas=DEFAULT_RUNAS,  # pylint: disable=redefined-builtin
           timeout=BACKUP_TIMEOUT) -> dict:
    """Take a backup (``pgbackrest --type=TYPE backup``) and return its record.

    pgBackRest makes a full backup instead of a diff or incr when there is no
    full one yet. pgBackRest's retention then expires the oldest backups.

    :param stanza: the stanza.
    :param type: ``full``, ``diff`` (changes since the last full) or ``incr``
        (changes since the last backup of any type).
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds the backup may take.
    :returns: the new backup as :func:`info` lists it (the newest), plus
        ``seconds``: how long the backup command took.
    :raises CommandExecutionError: with pgBackRest's message.

    CLI Example:

    .. code-block:: bash

        salt-ssh backup-01 pgbackrest.backup stanza=halite type=full
    """
    if not stanza:
        raise CommandExecutionError("pgbackrest backup: a stanza name is needed")
    if type not in BACKUP_TYPES:
        raise CommandExecutionError(f"pgbackrest backup: type must be one of {', '.join(BACKUP_TYPES)}, not {type!r}")
    began = time.monotonic()
    _run("backup", stanza, config, runas, timeout, (f"--type={type}",))
    seconds = round(time.monotonic() - began, 3)
    newest = last_backup(stanza, config, runas)
    if newest is None:
        raise CommandExecutionError(f"pgbackrest backup (stanza {stanza}): it succeeded, yet info lists no backup")
    return dict(newest, seconds=seconds)


# ---------------------------------------------------------------------------
# restore points
# ---------------------------------------------------------------------------

#: pg_create_restore_point takes up to 63 characters (MAXFNAMELEN - 1); we also keep them file-name safe.
_POINT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
_STANZA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LSN_TEXT = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def _check_point_name(name, where: str) -> str:
    if not isinstance(name, str) or not _POINT_NAME.match(name):
        raise CommandExecutionError(
            f"{where}: restore point name {name!r} must be 1 to 63 letters, digits, '.', '_' or '-'")
    return name


def _check_stanza_name(stanza, where: str) -> str:
    if not isinstance(stanza, str) or not _STANZA_NAME.match(stanza):
        raise CommandExecutionError(f"{where}: stanza name {stanza!r} must be letters, digits, '.', '_' or '-'")
    return stanza


def _lsn_text(value: int) -> str:
    """An LSN as PostgreSQL prints it (``0/3000028``)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _local_dsn(host, port, database, user) -> str:
    return " ".join(f"{key}={pg_move._conninfo_value(str(value))}"  # pylint: disable=protected-access
                    for key, value in (("host", host), ("port", port), ("dbname", database), ("user", user)))


def _restore_point_sql(name: str, specs: list[dict], lock_ms: int, record: bool = False) -> str:
    """The one transaction of :func:`restore_point`.

    Why this order gives checksums of exactly the data at the restore point:

    1. ``LOCK ... IN SHARE MODE`` conflicts with ROW EXCLUSIVE, which every
       INSERT, UPDATE, DELETE and TRUNCATE takes. It waits until each
       transaction that wrote to these tables has ended (a writer releases
       its locks only after its commit record is in the WAL and visible),
       and blocks new writers until we commit. It also blocks DROP and ALTER.
    2. The DO block re-reads the list of tables now that the locks are held:
       a table created or altered between the listing and the locks makes
       the whole transaction fail, before any restore point is written.
    3. ``pg_create_restore_point`` writes its WAL record at once (it is not
       transactional). Every change to these tables committed before it is in
       the WAL before it; none can commit after it until we commit.
    4. The checksums statement takes its snapshot now (READ COMMITTED: one
       snapshot per statement, taken after the locks), so it sees exactly what
       recovery to this restore point replays. Steps 3 and 4 could swap: with
       the locks held nothing changes between them.

    Tables created after the restore point are in neither; other databases
    are not locked and not checksummed.
    """
    listed = pg_move._TABLES_SQL.strip().rstrip(";")  # pylint: disable=protected-access
    lit = pg_move._lit  # pylint: disable=protected-access
    lines = ["BEGIN ISOLATION LEVEL READ COMMITTED;", f"SET LOCAL lock_timeout = '{lock_ms}ms';"]
    if specs:
        lines.append(f"LOCK TABLE {', '.join(s['table'] for s in specs)} IN SHARE MODE;")
    lines.append(f"""DO $halite$
DECLARE listed json;
BEGIN
  EXECUTE {lit(listed)} INTO listed;
  IF listed::jsonb IS DISTINCT FROM {lit(json.dumps(specs))}::jsonb THEN
    RAISE EXCEPTION 'halite: the tables changed while they were being locked';
  END IF;
END $halite$;""")
    if record:
        # a name already recorded is refused before the point is written (a point cannot be taken back)
        lines.append(f"""DO $halite$
BEGIN
  -- nested: PL/pgSQL plans an expression when it first runs it, the table may not exist
  IF to_regclass('halite.restore_points') IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM halite.restore_points WHERE name = {lit(name)}) THEN
      RAISE EXCEPTION 'halite: restore point name already used';
    END IF;
  END IF;
END $halite$;""")
    lines.append(f"SELECT pg_create_restore_point({lit(name)})::text AS lsn, "
                 "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') AS time "
                 "\\gset halite_rp_")
    sums = pg_move._checksums_sql(specs)  # pylint: disable=protected-access
    settings = pg_move.STABLE_TEXT if sums.startswith(pg_move.STABLE_TEXT) else ""
    select = sums[len(settings):].strip().rstrip(";")
    lines.append(settings + "SELECT (" + select + ")::text AS sums \\gset halite_rp_")
    if record:
        # kept with the cluster (halite's own schema, left out of every checksum): the drill and
        # orch.restore read it; committed after the point, so a copy recovered to it lacks the row
        lines.append("CREATE SCHEMA IF NOT EXISTS halite;")
        lines.append("CREATE TABLE IF NOT EXISTS halite.restore_points (name text PRIMARY KEY, lsn pg_lsn NOT NULL, "
                     "created timestamptz NOT NULL, tables jsonb NOT NULL);")
        lines.append(f"INSERT INTO halite.restore_points VALUES ({lit(name)}, :'halite_rp_lsn', :'halite_rp_time', "
                     ":'halite_rp_sums');")
    lines.append("SELECT :'halite_rp_lsn' || '|' || :'halite_rp_time';")
    lines.append("SELECT :'halite_rp_sums';")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def restore_point(name, database, runas="postgres", host="/var/run/postgresql", port=5432, lock_timeout=5,
                  record=True, only_primary=False) -> dict:
    """Mark a named point in the WAL, with the checksums of every table at that point.

    Runs on the primary, as ``runas`` over the local socket. In one
    transaction: takes SHARE locks on every user table of ``database`` (writers
    wait, readers do not), creates the restore point
    (``pg_create_restore_point``), reads the row count and checksum of each
    table (see ``pg_move.checksums``) and commits; then switches to a new WAL
    segment so that the point is archived soon. Recovery to this name
    (:func:`check_target`, :func:`restore`, :func:`drill`) gives exactly
    these tables. Writers wait while the tables are read: on a large database
    that is as long as a full read of it.

    Names must be unique: recovery stops at the *first* restore point of a
    name in the WAL; with ``record`` a name already kept is refused.

    :param name: 1 to 63 letters, digits, ``.``, ``_`` or ``-``.
    :param database: the database whose tables are locked and checksummed.
    :param runas: operating-system user running psql, and the database user (peer authentication).
    :param host: the server's socket directory (or host name).
    :param port: the server's port.
    :param lock_timeout: seconds to wait for each table's lock before giving up.
    :param record: also keep the point (name, lsn, time, checksums) in the table
        ``halite.restore_points`` of ``database``, in the same transaction; a name
        already there is refused before any point is written.
    :param only_primary: on a replica, return ``{"name", "skipped": "..."}`` instead of
        failing (so that an orchestration may target every member).
    :returns: ``{"name", "lsn", "time" (ISO 8601, UTC, the server's clock),
        "database", "tables": {"public.cars": {"rows", "md5"}, ...}}``.
    :raises CommandExecutionError: bad name, a replica, a lock not granted in
        time, or psql's error.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.restore_point before-upgrade-2026-11-30 carsale
    """
    where = f"pgbackrest restore_point {name}"
    _check_point_name(name, "pgbackrest restore_point")
    if not database or not isinstance(database, str):
        raise CommandExecutionError(f"{where}: a database name is needed")
    try:
        wait = float(lock_timeout)
    except (TypeError, ValueError):
        wait = 0
    if wait <= 0:
        raise CommandExecutionError(f"{where}: lock_timeout must be a positive number of seconds, not {lock_timeout!r}")
    dsn = _local_dsn(host, port, database, runas)
    psql = {"step": f"restore_point {name}", "server": "primary", "runas": runas, "module": "pgbackrest"}
    if pg_move._json(dsn, "SELECT to_json(pg_is_in_recovery());", **psql):  # pylint: disable=protected-access
        if only_primary:
            return {"name": name, "skipped": "a replica: the primary makes the restore point"}
        raise CommandExecutionError(
            f"{where}: the server at {host} port {port} is a replica (in recovery); make restore points on the primary")
    specs = pg_move._json(dsn, pg_move._TABLES_SQL, **psql)  # pylint: disable=protected-access
    try:
        out = pg_move._psql(dsn, _restore_point_sql(name, specs, max(1, int(wait * 1000)), record),  # pylint: disable=protected-access
                            **psql).strip()
    except CommandExecutionError as exc:
        if "halite: restore point name already used" in str(exc):
            raise CommandExecutionError(
                f"{where}: a restore point named {name} exists already (halite.restore_points); recovery stops at "
                "the first point of a name, so give another name") from exc
        if "lock timeout" in str(exc):
            raise CommandExecutionError(
                f"{where}: could not lock the tables of {database} within {wait:g} s: another session holds a "
                "conflicting lock (a long transaction, VACUUM FULL, ALTER TABLE?); no restore point was made, "
                "try again") from exc
        if "halite: the tables changed" in str(exc):
            raise CommandExecutionError(
                f"{where}: the tables of {database} were created, dropped or altered meanwhile; "
                "no restore point was made, try again") from exc
        raise
    head, _, rest = out.partition("\n")
    point_lsn, _, stamp = head.partition("|")
    try:
        checked = json.loads(rest, strict=False)
    except ValueError as exc:
        raise CommandExecutionError(f"{where}: the checksums are not JSON: {rest[:300]!r}") from exc
    if lsn(point_lsn) is None or not isinstance(checked, dict):
        raise CommandExecutionError(f"{where}: unexpected answer from the server: {out[:300]!r}")
    # the segment holding the point is archived when it is full or switched
    pg_move._psql(dsn, "SELECT pg_switch_wal();", **psql)  # pylint: disable=protected-access
    return {"name": name, "lsn": point_lsn, "time": stamp, "database": database, "tables": checked}


#: The backup host's libpq service for the cluster's restore points (salt/backup/repo.sls).
RESTORE_POINTS_SERVICE = "halite-restore-points"


def restore_points(dsn=None, runas=None) -> dict:
    """The restore points the cluster keeps (``halite.restore_points``), oldest first.

    :func:`restore_point` writes them with the cluster's data, so any member
    (a replica too) has them. The backup host reads them with its read-only
    login (the libpq service ``halite-restore-points``: every member's address).

    :param dsn: libpq DSN of the site's database; default: the backup host's service
        ``halite-restore-points``, as ``postgres``.
    :param runas: operating-system user to run psql as.
    :returns: ``{name: {"lsn", "time", "tables"}}``; ``{}`` when none was ever made.
    :raises CommandExecutionError: when no member answers.

    CLI Example:

    .. code-block:: bash

        salt-ssh backup-01 pgbackrest.restore_points
    """
    if dsn is None:
        dsn = f"service={RESTORE_POINTS_SERVICE}"
        runas = runas or DEFAULT_RUNAS
    sql = ("SELECT coalesce(json_object_agg(name, json_build_object('lsn', lsn::text, 'time', "
           "to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), 'tables', tables) "
           "ORDER BY lsn), '{}') FROM halite.restore_points;")
    try:
        return pg_move._json(dsn, sql, step="restore points", server="cluster", runas=runas,  # pylint: disable=protected-access
                             module="pgbackrest")
    except CommandExecutionError as exc:
        if 'relation "halite.restore_points" does not exist' in str(exc):
            return {}
        raise


def _owner(runas, where: str):
    """(uid, gid) to give new files to, or None to leave them to the current user."""
    if not runas or runas == pwd.getpwuid(os.geteuid()).pw_name:
        return None
    if os.geteuid() != 0:
        raise CommandExecutionError(f"{where}: cannot give files to {runas}: not root")
    try:
        entry = pwd.getpwnam(runas)
    except KeyError as exc:
        raise CommandExecutionError(f"{where}: no user {runas} on this host") from exc
    return entry.pw_uid, entry.pw_gid


def _make_dirs(path: str, owner, mode: int) -> None:
    """Create ``path`` and its missing parents, each with ``mode`` and ``owner``."""
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for folder in reversed(missing):
        os.mkdir(folder, mode)
        os.chmod(folder, mode)
        if owner:
            os.chown(folder, *owner)


TARGET_KEYS = ("time", "lsn", "name", "latest")
TARGET_ACTIONS = ("promote", "pause", "shutdown")
_TIME_TEXT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?\s*(Z|[+-]\d{2}(?::?\d{2})?)$")
_TIME_FORMATS = "ISO 8601 with an offset, e.g. 2026-11-30T08:15:00+00:00 or 2026-11-30 08:15:00+00"


def parse_time(text) -> datetime.datetime:
    """A time with an offset (ISO 8601 or PostgreSQL's style) as an aware datetime, or None if it is not one."""
    m = _TIME_TEXT.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    offset = m.group(8)
    if offset == "Z":
        zone = datetime.timezone.utc
    else:
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
        zone = datetime.timezone(datetime.timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    try:
        return datetime.datetime(*(int(m.group(i)) for i in range(1, 7)),
                                 int(((m.group(7) or ".")[1:] + "000000")[:6]), tzinfo=zone)
    except ValueError:
        return None


def _utc_text(moment) -> str:
    """Epoch seconds or an aware datetime as ``2026-11-30 08:15:00+00`` (UTC, PostgreSQL's style)."""
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "+00"


def _parse_target(target, where: str):
    """``(kind, value)``: the one key of a recovery target, checked and normalised.

    A JSON text of the mapping is accepted too (salt-ssh hands keyword values over as text).
    """
    if isinstance(target, str) and target.lstrip().startswith("{"):
        try:
            target = json.loads(target)
        except ValueError:
            pass
    if not isinstance(target, dict):
        raise CommandExecutionError(
            f"{where}: the target must be a dict with one of {', '.join(TARGET_KEYS)}, not {target!r}")
    unknown = sorted(str(k) for k in target if k not in TARGET_KEYS)
    if unknown:
        raise CommandExecutionError(
            f"{where}: unknown target key {', '.join(unknown)}; a target has exactly one of {', '.join(TARGET_KEYS)}")
    if len(target) != 1:
        shown = " and ".join(target) if target else "none"
        raise CommandExecutionError(
            f"{where}: the target gives {shown}; a target has exactly one of {', '.join(TARGET_KEYS)}")
    ((kind, value),) = target.items()
    if kind == "time":
        moment = parse_time(value)
        if moment is None:
            raise CommandExecutionError(f"{where}: target time {value!r} is not {_TIME_FORMATS}")
        return kind, moment
    if kind == "lsn":
        if not isinstance(value, str) or not _LSN_TEXT.match(value.strip()):
            raise CommandExecutionError(f"{where}: target lsn {value!r} is not an LSN such as 0/3000028")
        return kind, lsn(value.strip())
    if kind == "name":
        return kind, _check_point_name(value, where)
    if value is not True:
        raise CommandExecutionError(f"{where}: target latest must be true, not {value!r}")
    return kind, None


def _known_lsns(known_names, where: str):
    """``{name: lsn int or None}`` from a list of names or a dict name -> lsn (or -> point)."""
    if isinstance(known_names, str):
        known_names = [n.strip() for n in known_names.split(",") if n.strip()]
    if isinstance(known_names, dict):
        out = {}
        for name, value in known_names.items():
            text = value.get("lsn") if isinstance(value, dict) else value
            if text is not None and lsn(text) is None:
                raise CommandExecutionError(f"{where}: known restore point {name} has lsn {text!r}, not an LSN")
            out[str(name)] = lsn(text) if text is not None else None
        return out
    if isinstance(known_names, (list, tuple, set)):
        return {str(name): None for name in known_names}
    raise CommandExecutionError(f"{where}: known_names must be a list of names or a dict name -> lsn")


def _archive_end(record: dict, wal_segment_size: int):
    """``(newest segment name, LSN just past it)`` of the current archive, or (None, None)."""
    archive = _current_archive(record)
    newest = archive["max"] if archive else None
    if not newest or not _WAL_NAME.match(newest):
        return None, None
    return newest, (segment_number(newest, wal_segment_size) + 1) * int(wal_segment_size)


def plan_target(record: dict, target, known_names=None, now=None, set=None,  # pylint: disable=redefined-builtin
                wal_segment_size=WAL_SEGMENT_SIZE, archived_at=None) -> dict:
    """Check a recovery target against a stanza record and choose the backup set (no I/O).

    See :func:`check_target`; ``set`` forces a backup set, which must exist
    and end at or before the target; ``archived_at`` is when the newest WAL
    segment reached the archive (epoch seconds), see :func:`_wal_archived_at`.
    """
    where = f"pgbackrest check_target (stanza {record.get('name')})"
    kind, value = _parse_target(target, where)
    backups = record["backups"]
    if not backups:
        raise CommandExecutionError(f"{where}: the stanza has no backup yet, so nothing can be restored")
    oldest = backups[0]
    usable = list(backups)  # oldest first: the last one that fits is the set
    out = {"type": "default" if kind == "latest" else kind, "target": None, "set": None}

    def ending_by_lsn(limit: int, what: str):
        known = [b for b in backups if lsn(b["lsn_stop"]) is not None]
        if not known:
            raise CommandExecutionError(f"{where}: the backups record no stop lsn (pgBackRest before 2.37)")
        first = min(known, key=lambda b: lsn(b["lsn_stop"]))
        if limit < lsn(first["lsn_stop"]):
            raise CommandExecutionError(
                f"{where}: {what} is before the end of the oldest backup {first['label']} (lsn {first['lsn_stop']}): "
                f"the earliest lsn reachable is {first['lsn_stop']}")
        newest, end = _archive_end(record, wal_segment_size)
        if end is None:
            raise CommandExecutionError(f"{where}: the WAL archive holds no segment yet, so {what} cannot be reached")
        if limit >= end:
            raise CommandExecutionError(
                f"{where}: {what} is beyond the newest WAL in the archive (segment {newest}, which ends before "
                f"lsn {_lsn_text(end)}); wait for archiving, or check it with pgbackrest.check")
        return [b for b in known if lsn(b["lsn_stop"]) <= limit]

    if kind == "time":
        moment = value.timestamp()
        clock = time.time() if now is None else now
        if isinstance(clock, str):
            parsed = parse_time(clock)
            if parsed is None:
                raise CommandExecutionError(f"{where}: now {clock!r} is not {_TIME_FORMATS}")
            clock = parsed.timestamp()
        elif isinstance(clock, datetime.datetime):
            clock = clock.timestamp()
        out["target"] = _utc_text(value)
        if moment > float(clock):
            raise CommandExecutionError(
                f"{where}: target time {out['target']} is in the future (now is {_utc_text(float(clock))})")
        if oldest["stop"] is None or moment < oldest["stop"]:
            earliest = _utc_text(oldest["stop"]) if oldest["stop"] is not None else "unknown"
            raise CommandExecutionError(
                f"{where}: target time {out['target']} is before the end of the oldest backup {oldest['label']}: "
                f"the earliest time reachable is {earliest}")
        # recovery stops at the first commit after the target time: one must be in the archive
        if archived_at is not None and moment >= archived_at:
            newest, _end = _archive_end(record, wal_segment_size)
            raise CommandExecutionError(
                f"{where}: target time {out['target']} is after the newest WAL in the archive (segment {newest}, "
                f"archived {_utc_text(archived_at)}), so recovery could not stop there; wait for archiving, "
                "or check it with pgbackrest.check")
        usable = [b for b in backups if b["stop"] is not None and b["stop"] <= moment]
    elif kind == "lsn":
        out["target"] = _lsn_text(value)
        usable = ending_by_lsn(value, f"target lsn {out['target']}")
    elif kind == "name":
        out["target"] = value
        if known_names is not None:
            known = _known_lsns(known_names, where)
            if value not in known:
                raise CommandExecutionError(
                    f"{where}: restore point {value} is not known; the known ones are "
                    f"{', '.join(known) if known else '(none recorded)'}")
            if known[value] is not None:
                usable = ending_by_lsn(known[value], f"restore point {value} (lsn {_lsn_text(known[value])})")
    if set is not None:
        labels = [b["label"] for b in backups]
        if set not in labels:
            raise CommandExecutionError(
                f"{where}: backup set {set} is not in the repository; the sets are {', '.join(labels)}")
        if set not in [b["label"] for b in usable]:
            raise CommandExecutionError(
                f"{where}: backup set {set} ends after the target {out['target']}; sets that can reach it: "
                f"{', '.join(b['label'] for b in usable)}")
        out["set"] = set
    else:
        out["set"] = usable[-1]["label"]
    return out


def check_target(stanza, target, known_names=None, now=None, config=None, runas=DEFAULT_RUNAS,
                 timeout=DEFAULT_TIMEOUT, wal_segment_size=WAL_SEGMENT_SIZE, archive_wait=0) -> dict:
    """Check that a recovery target can be reached, and choose the backup set for it.

    Only reads (``pgbackrest info``, and for a time the listing of the newest
    archived segment's folder): call it before anything is changed on any
    host. ``target`` is a dict with exactly one key:

    ``time``
        ISO 8601 with an offset (``2026-11-30T08:15:00+00:00``) or
        PostgreSQL's style (``2026-11-30 08:15:00+00``). Refused before the
        end of the oldest backup (the message gives the earliest reachable
        time), after ``now``, and after the newest WAL segment reached the
        archive (recovery stops at the first commit after the target, which
        must be archived). The set is the newest backup that ended by then.
    ``lsn``
        ``0/3000028``. Refused before the oldest backup's stop lsn, and beyond
        the newest WAL segment in the archive. The set is the newest backup
        whose stop lsn is at or before it.
    ``name``
        A restore point. With ``known_names`` it must be one of them; when
        ``known_names`` maps names to LSNs (as :func:`restore_points` does) the
        set is the newest backup that ended before the point, and a point
        older than every backup or not yet archived is refused. Without
        ``known_names`` (or with a list) the set is the newest backup.
    ``latest``
        ``true``: the end of the archived WAL, from the newest backup.

    :param stanza: the stanza.
    :param target: the dict described above.
    :param known_names: restore point names: a list, or a dict name -> lsn (or -> point).
    :param now: the current time (epoch seconds, a datetime or a time string); default the clock.
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest.
    :param timeout: seconds.
    :param wal_segment_size: PostgreSQL's WAL segment size, in bytes.
    :param archive_wait: seconds to wait for a restore point's WAL to reach the
        repository before judging (0: judge now).
    :returns: ``{"type": "time"|"lsn"|"name"|"default", "target": normalised text or None
        (time in UTC, PostgreSQL's style), "set": backup label}``.
    :raises CommandExecutionError: one sentence saying why the target cannot be reached or is malformed.

    CLI Example:

    .. code-block:: bash

        salt-ssh backup-01 pgbackrest.check_target halite '{"time": "2026-11-30 08:15:00+00"}'
        salt-ssh backup-01 pgbackrest.check_target halite '{"name": "before-upgrade"}' known_names='[before-upgrade]'
    """
    return _plan(stanza, target, known_names, now, None, config, runas, timeout, wal_segment_size, archive_wait)


def _wal_archived_at(record: dict, config, runas, timeout):
    """When the newest segment of the current archive reached the repository (epoch seconds), or None.

    Lists only that segment's folder (``pgbackrest repo-ls``; ``time`` is the file's).
    """
    archive = _current_archive(record)
    newest = archive["max"] if archive else None
    if not newest or not _WAL_NAME.match(newest):
        return None
    stanza = record["name"]
    listing = _json("repo-ls", stanza, config, runas, timeout, (), (f"archive/{stanza}/{archive['id']}/{newest[:16]}",))
    times = [meta.get("time") for path, meta in _dict(listing).items()
             if path.startswith(newest + "-") and isinstance(_dict(meta).get("time"), int)]
    return max(times) if times else None


def _point_lsn(target, known_names):
    """The LSN of a ``name`` target when ``known_names`` maps names to LSNs, else None."""
    if not isinstance(target, dict) or "name" not in target or not isinstance(known_names, dict):
        return None
    value = known_names.get(target["name"])
    value = value.get("lsn") if isinstance(value, dict) else value
    return lsn(value) if isinstance(value, str) else None


def _plan(stanza, target, known_names, now, set, config, runas, timeout,  # pylint: disable=redefined-builtin
          wal_segment_size=WAL_SEGMENT_SIZE, archive_wait=0) -> dict:
    """:func:`plan_target` on the stanza as pgBackRest lists it now (None: the latest).

    With ``archive_wait`` seconds, a restore point whose WAL has not reached the
    repository yet (archiving is asynchronous; a point made a moment ago) is
    waited for, up to that long, before the target is judged.
    """
    record = _one(stanza, config, runas, timeout)
    point = _point_lsn(target, known_names)
    if point is not None and float(archive_wait or 0) > 0:
        deadline = time.monotonic() + float(archive_wait)
        while True:
            newest, end = _archive_end(record, wal_segment_size)
            if end is not None and end > point:
                break
            if time.monotonic() > deadline:
                raise CommandExecutionError(
                    f"pgbackrest (stanza {stanza}): the WAL of restore point {target['name']} "
                    f"(lsn {_lsn_text(point)}) has not reached the repository within {archive_wait}s (newest "
                    f"archived segment: {newest}); is archiving working? (pgbackrest check)")
            time.sleep(2)
            record = _one(stanza, config, runas, timeout)
    target = {"latest": True} if target is None else target
    archived_at = (_wal_archived_at(record, config, runas, timeout)
                   if isinstance(target, dict) and "time" in target and record["backups"] else None)
    return plan_target(record, target, known_names, now, set, wal_segment_size, archived_at)


def restore(stanza, pg_path, target=None, set=None, delta=True, target_action="promote",  # pylint: disable=redefined-builtin
            archive_mode=None, options=(), known_names=None, config=None, runas=DEFAULT_RUNAS,
            timeout=BACKUP_TIMEOUT) -> dict:
    """Restore a backup into ``pg_path`` and set up recovery to ``target`` (``pgbackrest restore``).

    The target is checked first (:func:`check_target`), so an unreachable one
    changes nothing. PostgreSQL must be stopped; start it afterwards and it
    replays the WAL up to the target, then acts as ``target_action`` says.

    :param stanza: the stanza.
    :param pg_path: the data directory to restore into (``--pg1-path``).
    :param target: see :func:`check_target`; None: the latest (``--type=default``,
        the end of the archived WAL, no target action).
    :param set: backup label to restore; default: the one :func:`check_target` chooses.
    :param delta: ``--delta``: reuse the files already in ``pg_path`` that match
        (used only when ``pg_path`` holds files).
    :param target_action: ``promote``, ``pause`` or ``shutdown`` at the target.
    :param archive_mode: None to keep the backup's, ``off`` so the restored
        server archives nothing (a copy must not push WAL into the cluster's
        archive), or ``preserve``.
    :param options: more pgbackrest options, e.g. ``["--process-max=4"]``.
    :param known_names: restore point names for a ``name`` target (see :func:`check_target`).
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest (it must be able to write ``pg_path``).
    :param timeout: seconds the restore may take.
    :returns: ``{"seconds", "set", "type", "target"}``.
    :raises CommandExecutionError: an unreachable target, or pgBackRest's error.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pgbackrest.restore halite /var/lib/postgresql/15/main '{"time": "2026-11-30 08:15:00+00"}'
    """
    where = f"pgbackrest restore (stanza {stanza})"
    if not isinstance(pg_path, str) or not pg_path.startswith("/"):
        raise CommandExecutionError(f"{where}: pg_path must be an absolute path, not {pg_path!r}")
    if target_action not in TARGET_ACTIONS:
        raise CommandExecutionError(
            f"{where}: target_action must be one of {', '.join(TARGET_ACTIONS)}, not {target_action!r}")
    if archive_mode not in (None, "off", "preserve"):
        raise CommandExecutionError(f"{where}: archive_mode must be off or preserve, not {archive_mode!r}")
    if isinstance(options, str):
        options = [options]
    bad = [o for o in options if not str(o).startswith("--")]
    if bad:
        raise CommandExecutionError(f"{where}: options are pgbackrest options such as --process-max=4, not {bad}")
    chosen = _plan(stanza, target, known_names, None, set, config, runas, DEFAULT_TIMEOUT)
    argv = [f"--pg1-path={pg_path}"]
    if delta and os.path.isdir(pg_path) and os.listdir(pg_path):
        argv.append("--delta")
    argv += [f"--set={chosen['set']}", f"--type={chosen['type']}"]
    if chosen["target"] is not None:
        argv += [f"--target={chosen['target']}", f"--target-action={target_action}"]
    if archive_mode:
        argv.append(f"--archive-mode={archive_mode}")
    argv += [str(o) for o in options]
    began = time.monotonic()
    _run("restore", stanza, config, runas, timeout, argv)
    return {"seconds": round(time.monotonic() - began, 3), "set": chosen["set"], "type": chosen["type"],
            "target": chosen["target"]}


# ---------------------------------------------------------------------------
# the restore drill
# ---------------------------------------------------------------------------

DEFAULT_SCRATCH = "/var/lib/halite-drill"
DRILL_PORT = 5499
PG_BIN = "/usr/lib/postgresql/15/bin"
#: The file the drill writes first into its folder; a folder without it is not removed.
DRILL_CONFIG = "halite-drill.conf"
#: pg_controldata's line -> the setting that must be at least as high on the copy.
_CONTROL_MINIMUMS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}
#: Settings that keep the copy to itself; given on the command line too, so
#: that an ALTER SYSTEM of the cluster (the restored postgresql.auto.conf,
#: which PostgreSQL reads after the config file) cannot override them.
_ISOLATION = ("listen_addresses", "port", "unix_socket_directories", "hba_file", "ident_file", "archive_mode",
              "shared_preload_libraries", "ssl")
#: Seconds between two looks while the copy recovers.
DRILL_POLL = 0.2
#: The server's answer to our own connection attempts while it recovers: not the reason it failed.
_REFUSED = re.compile(r"FATAL: +the database system is (starting up|not accepting connections|shutting down)")


def _as(runas, argv: list, where: str) -> list:
    """``argv`` run as ``runas`` (through runuser when we are root)."""
    if runas and runas != pwd.getpwuid(os.geteuid()).pw_name:
        if os.geteuid() != 0:
            raise CommandExecutionError(f"{where}: cannot run {os.path.basename(argv[0])} as {runas}: not root")
        return ["runuser", "-u", runas, "--", *argv]
    return argv


def _tool(argv: list, runas, where: str, timeout: float = 120) -> str:
    """Run a PostgreSQL program; its standard output, or CommandExecutionError with its message."""
    try:
        res = subprocess.run(_as(runas, argv, where), capture_output=True, text=True, errors="replace", cwd="/",
                             env=dict(os.environ, LC_ALL="C"), timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(f"{where}: {os.path.basename(argv[0])} gave no answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise CommandExecutionError(f"{where}: cannot run {argv[0]}: {exc}") from exc
    if res.returncode != 0:
        raise CommandExecutionError(
            f"{where}: {os.path.basename(argv[0])} exited {res.returncode}: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def _controldata(pg_bin: str, data: str, runas) -> dict:
    """pg_controldata of a data directory: ``{label: value}``."""
    out = _tool([os.path.join(pg_bin, "pg_controldata"), data], runas, "pg_controldata")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def _conf_value(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _drill_settings(home: str, port: int, control: dict) -> dict:
    """The copy's whole configuration: alone on a socket in ``home``, small, fast, archiving nothing.

    Not the restored postgresql.conf: that one is Patroni's, for a database
    host (its paths, ports, listen addresses, certificates, libraries).
    """
    settings = {
        "listen_addresses": "",
        "port": int(port),
        "unix_socket_directories": home,
        "hba_file": os.path.join(home, "pg_hba.conf"),
        "ident_file": os.path.join(home, "pg_ident.conf"),
        "archive_mode": "off",
        "shared_preload_libraries": "",
        "ssl": "off",
        "cluster_name": "halite-drill",
        "shared_buffers": "32MB",
        # off: no connection before recovery ends, and no pause when a
        # parameter change in the WAL asks for more than we set
        "hot_standby": "off",
        # a throwaway copy: no flushes, no 16 MiB of zeros per new WAL segment, few segments kept
        "fsync": "off",
        "synchronous_commit": "off",
        "wal_init_zero": "off",
        "min_wal_size": "32MB",
        "max_wal_size": "256MB",
        "autovacuum": "off",
        "jit": "off",
        "logging_collector": "off",
        "log_destination": "stderr",
        "lc_messages": "C",
        "timezone": "UTC",
        "log_timezone": "UTC",
    }
    # recovery stops when one of these is lower than on the server that wrote the WAL
    for label, name in _CONTROL_MINIMUMS.items():
        if control.get(label, "").isdigit():
            settings[name] = int(control[label])
    return settings


def _write_drill_files(home: str, settings: dict, user: str, owner) -> str:
    """The copy's config, pg_hba.conf (local trust for ``user`` only) and pg_ident.conf; the config's path."""
    files = {
        DRILL_CONFIG: "# written by pgbackrest.drill: a restored copy, alone, on a Unix socket in this folder\n"
                      + "".join(f"{k} = {_conf_value(v)}\n" for k, v in settings.items()),
        "pg_hba.conf": f"local all {user} trust\n",
        "pg_ident.conf": "",
    }
    for name, text in files.items():
        path = os.path.join(home, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        if owner:
            os.chown(path, *owner)
    return os.path.join(home, DRILL_CONFIG)


def _log_excerpt(path: str, lines: int = 3) -> str:
    """The last FATAL/PANIC/ERROR lines of a server log, else its last lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read().splitlines()
    except OSError:
        return "(no server log)"
    bad = [t for t in text if re.search(r"\b(FATAL|PANIC|ERROR):", t) and not _REFUSED.search(t)]
    return " | ".join((bad or text)[-lines:]) or "(empty server log)"


def _running(data: str) -> bool:
    """Whether the postmaster of ``data`` (its postmaster.pid) is alive."""
    try:
        with open(os.path.join(data, "postmaster.pid"), encoding="ascii", errors="replace") as fh:
            pid = int(fh.readline())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _stop_server(pg_bin: str, data: str, runas, proc=None, modes=("fast", "immediate")) -> str:
    """Stop the copy (fast, then immediate: ``modes``); a problem as a sentence, or ''."""
    problem = ""
    if _running(data):
        for mode in modes:
            try:
                _tool([os.path.join(pg_bin, "pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "60", "stop"], runas,
                      "stopping the copy", timeout=90)
                problem = ""
                break
            except CommandExecutionError as exc:
                problem = str(exc)
    if proc is not None:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            problem = problem or "the copy's server did not stop within 30 s and was killed"
    return problem


def _folder_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _compare_tables(seen: dict, expected) -> tuple[dict, list]:
    """Per table ``{"rows", "md5", "expected", "ok"}``, and the differences as sentences."""
    tables, differences = {}, []
    for name in sorted(set(seen) | set(expected or {})):
        got, want = seen.get(name), (expected or {}).get(name)
        entry = {"rows": got["rows"] if got else None, "md5": got["md5"] if got else None,
                 "expected": want, "ok": True}
        if expected is not None:
            if got is None:
                differences.append(f"{name}: missing from the restored database ({want['rows']} rows expected)")
            elif want is None:
                differences.append(f"{name}: in the restored database ({got['rows']} rows) but not expected")
            elif got["rows"] != want["rows"]:
                differences.append(f"{name}: {got['rows']} rows restored, {want['rows']} expected")
            elif got["md5"] != want["md5"]:
                differences.append(f"{name}: {got['rows']} rows as expected, but the contents differ (checksum)")
            entry["ok"] = got is not None and want is not None and got == {"rows": want["rows"], "md5": want["md5"]}
        tables[name] = entry
    return tables, differences


def drill(stanza, target=None, set=None, expected=None, database=None,  # pylint: disable=redefined-builtin
          scratch=DEFAULT_SCRATCH, port=None, pg_bin=None, known_names=None, config=None,
          runas=DEFAULT_RUNAS, timeout=BACKUP_TIMEOUT, keep=False, points_dsn=None, archive_wait=0) -> dict:
    """Prove that a backup restores: restore it into a scratch folder, start it alone, check it, remove it.

    Runs where the repository is (the backup host) and touches no cluster:

    1. checks the target (:func:`check_target`) and chooses the set;
    2. removes a stale ``<scratch>/<stanza>`` of an earlier drill (only one
       holding the drill's config file; its server is stopped first);
    3. restores into ``<scratch>/<stanza>/data`` (``--archive-mode=off``: the
       copy archives nothing; ``--target-action=promote``;
       ``--reset-pg1-host``: restore runs here even when pgbackrest.conf
       names the database host; tablespaces under the scratch folder);
    4. starts PostgreSQL there with the drill's own config file (not the
       restored postgresql.conf, which is Patroni's, for a database host):
       no TCP (``listen_addresses=''``), a Unix socket in the scratch
       folder, local trust for ``runas`` only, small shared_buffers, and the
       ``max_*`` settings at least as high as pg_controldata says;
    5. waits until recovery has ended, bounded by ``timeout``;
    6. reads the checksums of ``database`` (``pg_move.checksums``) and
       compares them with ``expected`` (the ``tables`` of a restore point),
       table by table;
    7. always stops the copy and removes the scratch folder (with ``keep``
       the stopped copy and its config stay, to be inspected), on failure too.

    :param stanza: the stanza.
    :param target: see :func:`check_target`; None: the latest.
    :param set: backup label to restore; default: the one :func:`check_target` chooses.
    :param expected: ``{table: {"rows", "md5"}}``, the ``tables`` of a restore
        point (a whole restore point is accepted too); None to only read them.
    :param database: the database to checksum; None to check only that the copy recovers.
    :param scratch: folder for the copy (``<scratch>/<stanza>``).
    :param port: the copy's port (it names the socket file in the scratch folder only).
    :param pg_bin: folder of the PostgreSQL server programs, of the cluster's major version.
    :param known_names: restore point names for a ``name`` target (see :func:`check_target`).
    :param config: path of pgbackrest.conf, or None for pgBackRest's default.
    :param runas: user that runs pgbackrest and the copy's PostgreSQL.
    :param timeout: seconds for the restore, and again for the recovery.
    :param keep: keep the stopped copy in the scratch folder.
    :param archive_wait: seconds to wait for a restore point's WAL to reach the repository
        (archiving is asynchronous: a point made a moment ago may not be there yet).
    :param points_dsn: where the cluster's restore points are read (:func:`restore_points`)
        for a ``name`` target given without ``expected``/``known_names``; default: the pillar's.
    :returns: ``{"ok", "set", "type", "target", "restored_lsn" (pg_current_wal_lsn after
        recovery), "replayed_lsn" (the last WAL record replayed), "database",
        "tables": {table: {"rows", "md5", "expected", "ok"}}, "differences": [...],
        "seconds": {"restore", "recovery", "check", "total"}, "size_bytes" (the
        restored data directory), "kept": path or None}``.
    :raises CommandExecutionError: ``restore drill: `` and the reason: an
        unreachable target, pgBackRest's own error line (e.g. a damaged or
        undecryptable backup file), the server's FATAL line when recovery fails.

    CLI Example:

    .. code-block:: bash

        salt-ssh backup-01 pgbackrest.drill halite
        salt-ssh backup-01 pgbackrest.drill halite '{"name": "before-upgrade"}' database=carsale expected='{...}'
    """
    began = time.monotonic()
    try:
        # on the backup host its pillar knows the drill's file, port and the cluster's binaries
        port = port or DRILL_PORT
        pg_bin = pg_bin or PG_BIN
        if isinstance(target, str):
            try:
                target = json.loads(target)
            except ValueError:
                pass
        if not points_dsn and runas and os.path.exists(os.path.expanduser(f"~{runas}/.pg_service.conf")):
            points_dsn = f"service={RESTORE_POINTS_SERVICE}"  # the backup host's (salt/backup/repo.sls)
        if (isinstance(target, dict) and "name" in target and (expected is None or known_names is None)
                and points_dsn):
            points = restore_points(points_dsn, runas=runas)
            if target["name"] not in points:
                known = ", ".join(points) or "(none)"
                raise CommandExecutionError(f"restore point {target['name']} is not known; the known ones are {known}")
            if expected is None and database:
                expected = points[target["name"]]["tables"]
            if known_names is None:
                known_names = {n: p["lsn"] for n, p in points.items()}
        if expected is not None and not database:
            raise CommandExecutionError("expected checksums need database= (the database they belong to)")
        if isinstance(expected, dict) and isinstance(expected.get("tables"), dict) and "lsn" in expected:
            expected = expected["tables"]  # a whole restore point
        if expected is not None and not isinstance(expected, dict):
            raise CommandExecutionError("expected must be the tables of a restore point: {table: {rows, md5}}")
        if not isinstance(scratch, str) or not scratch.startswith("/") or os.path.normpath(scratch) == "/":
            raise CommandExecutionError(f"scratch must be an absolute folder other than /, not {scratch!r}")
        home = os.path.join(os.path.normpath(scratch), _check_stanza_name(stanza, "pgbackrest drill"))
        data = os.path.join(home, "data")
        owner = _owner(runas, "pgbackrest drill")
        user = runas or pwd.getpwuid(os.geteuid()).pw_name  # the copy's only database user
        chosen = _plan(stanza, target, known_names, None, set, config, runas, DEFAULT_TIMEOUT,
                       archive_wait=archive_wait)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"restore drill: {exc}") from exc

    seconds = {"restore": None, "recovery": None, "check": None, "total": None}
    report = {"ok": False, "set": chosen["set"], "type": chosen["type"], "target": chosen["target"],
              "restored_lsn": None, "replayed_lsn": None, "database": database, "tables": {}, "differences": [],
              "seconds": seconds, "size_bytes": None, "kept": None}
    proc, ours = None, False  # ours: the folder is the drill's (its config is written), so it may be removed
    try:
        _clear_scratch(home, pg_bin, runas)
        _make_dirs(os.path.normpath(scratch), owner, 0o750)
        _make_dirs(home, owner, 0o700)
        _write_drill_files(home, _drill_settings(home, port, {}), user, owner)
        ours = True

        step = time.monotonic()
        restore(stanza, data, target=target, set=chosen["set"], delta=False, target_action="promote",
                archive_mode="off", known_names=known_names, config=config, runas=runas, timeout=timeout,
                options=("--reset-pg1-host", f"--tablespace-map-all={os.path.join(home, 'tablespaces')}"))
        seconds["restore"] = round(time.monotonic() - step, 3)

        settings = _drill_settings(home, port, _controldata(pg_bin, data, runas))
        conf = _write_drill_files(home, settings, user, owner)
        argv = [os.path.join(pg_bin, "postgres"), "-D", data, "-c", f"config_file={conf}"]
        for name in _ISOLATION:
            argv += ["-c", f"{name}={settings[name]}"]
        step = time.monotonic()
        log_path = os.path.join(home, "postgresql.log")
        with open(log_path, "ab") as log_file:
            os.chmod(log_path, 0o600)
            if owner:
                os.chown(log_path, *owner)
            try:
                proc = subprocess.Popen(_as(runas, argv, "starting the copy"), stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                        stdout=log_file, stderr=subprocess.STDOUT, cwd=home, start_new_session=True,
                                        env=dict(os.environ, LC_ALL="C"))
            except OSError as exc:
                raise CommandExecutionError(f"cannot start {argv[0]}: {exc}") from exc
        dsn = _local_dsn(home, port, "postgres", user)
        psql = {"step": "drill", "server": "restored", "runas": runas, "module": "pgbackrest"}
        deadline = time.monotonic() + float(timeout)
        state, last = None, ""
        while True:
            code = proc.poll()
            if code is not None:
                raise CommandExecutionError(
                    f"PostgreSQL stopped during recovery (exit {code}): {_log_excerpt(log_path)}")
            try:
                state = pg_move._json(dsn, (  # pylint: disable=protected-access
                    "SELECT json_build_object('in_recovery', pg_is_in_recovery(), "
                    "'lsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
                    "'replayed', pg_last_wal_replay_lsn()::text, "
                    "'databases', (SELECT json_agg(datname) FROM pg_database WHERE datallowconn));"), **psql)
            except CommandExecutionError as exc:
                state, last = None, str(exc)
            if state and not state["in_recovery"]:
                break
            if time.monotonic() > deadline:
                raise CommandExecutionError(
                    f"recovery did not end within {float(timeout):.0f} s (last answer: {last or 'in recovery'}); "
                    f"server log: {_log_excerpt(log_path)}")
            time.sleep(DRILL_POLL)
        seconds["recovery"] = round(time.monotonic() - step, 3)
        report["restored_lsn"], report["replayed_lsn"] = state["lsn"], state["replayed"]

        step = time.monotonic()
        if database:
            if database in (state["databases"] or []):
                seen = pg_move.checksums(_local_dsn(home, port, database, user), runas)
                report["tables"], report["differences"] = _compare_tables(seen, expected)
            else:
                report["differences"].append(f"database {database} is not in the restored copy")
        seconds["check"] = round(time.monotonic() - step, 3)
        report["size_bytes"] = _folder_size(data)
        report["ok"] = not report["differences"]
    except CommandExecutionError as exc:
        cleanup = _end_drill(home, pg_bin, runas, proc, ours, keep)
        raise CommandExecutionError(f"restore drill: {exc}" + (f"; {cleanup}" if cleanup else "")) from exc
    except BaseException:
        _end_drill(home, pg_bin, runas, proc, ours, keep)
        raise
    cleanup = _end_drill(home, pg_bin, runas, proc, ours, keep)
    if cleanup:
        raise CommandExecutionError(f"restore drill: {cleanup}")
    report["kept"] = home if keep else None
    seconds["total"] = round(time.monotonic() - began, 3)
    return report


def _clear_scratch(home: str, pg_bin: str, runas) -> None:
    """Remove the copy of an earlier drill (stopping its server); refuse a folder the drill did not make."""
    if not os.path.lexists(home):
        return
    if not os.path.isfile(os.path.join(home, DRILL_CONFIG)) and (not os.path.isdir(home) or os.listdir(home)):
        raise CommandExecutionError(
            f"{home} exists and is not a drill's copy (no {DRILL_CONFIG} in it): remove it yourself, or give "
            "another scratch folder")
    problem = _stop_server(pg_bin, os.path.join(home, "data"), runas, modes=("immediate",))
    if problem:
        raise CommandExecutionError(f"the server of an earlier drill in {home} does not stop: {problem}")
    shutil.rmtree(home)


def _end_drill(home: str, pg_bin: str, runas, proc, ours: bool, keep: bool) -> str:
    """Stop the copy and (unless ``keep``) remove it; a problem as a sentence, or ''.

    Nothing is touched in a folder the drill did not make (``ours`` False).
    """
    if not ours:
        return ""
    problems = []
    try:
        # a copy that is kept is shut down cleanly; one that is removed needs no shutdown checkpoint
        problem = _stop_server(pg_bin, os.path.join(home, "data"), runas, proc,
                               ("fast", "immediate") if keep else ("immediate",))
        if problem:
            problems.append(f"stopping the copy: {problem}")
    except Exception as exc:  # pylint: disable=broad-except
        problems.append(f"stopping the copy: {exc}")
    if not keep:
        try:
            shutil.rmtree(home)
        except OSError as exc:
            problems.append(f"could not remove {home}: {exc}")
    return "; ".join(problems)
