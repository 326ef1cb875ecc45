"""
pgBackRest, read through its own command line: backups, the WAL archive, and
whether the last backup is fresh.

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

import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

from salt.exceptions import CommandExecutionError

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
    """Load on any Python 3.8+ (standard library only).

    The binary is looked for on each call, so that a host without pgBackRest
    gets a sentence saying so rather than "pgbackrest.info is not available".
    """
    if sys.version_info < (3, 8):
        return (False, "the pgbackrest module needs Python 3.8 or newer")
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
    if not stanza:
        raise CommandExecutionError("pgbackrest check: a stanza name is needed")
    _run("check", stanza, config, runas, timeout)
    return True


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
