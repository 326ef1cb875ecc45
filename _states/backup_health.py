"""
A gate on backups: the last pgBackRest backup is fresh and the WAL archive
is continuous.

It only asks the ``pgbackrest`` execution module (``pgbackrest.health``) and
waits; it never changes anything. The keywords ``config`` and ``runas`` are
passed on to that module.

.. code-block:: yaml

    backup-fresh:
      backup_health.fresh:
        - stanza: halite
        - max_age: 93600
        - timeout: 600
"""
from __future__ import annotations

import time

__virtualname__ = "backup_health"

#: A daily backup, plus two hours of slack (seconds).
DEFAULT_MAX_AGE = 26 * 3600
#: Keywords passed on to the pgbackrest module.
MODULE_KEYS = ("config", "runas", "wal_segment_size")


def __virtual__():
    """Load when the pgbackrest execution module is available."""
    if "pgbackrest.health" in __salt__:
        return __virtualname__
    return (False, "backup_health needs the pgbackrest execution module (_modules/pgbackrest.py)")


def _summary(seen: dict) -> str:
    archive = seen.get("archive") or {}
    return (f"last backup {seen.get('last_backup')} ({seen.get('last_type')}) {seen.get('age')}s old, "
            f"{seen.get('backups')} backup(s), WAL archive {archive.get('archive_id')} continuous "
            f"{archive.get('checked_from')}..{archive.get('last')}")


def fresh(name, stanza, max_age=DEFAULT_MAX_AGE, timeout=300, interval=10, check=True, **options):
    """Wait until the stanza's last backup is younger than ``max_age`` and nothing fails.

    Fresh means (``pgbackrest.health``): pgBackRest's stanza status is ok; the
    newest backup (any type) stopped less than ``max_age`` seconds ago and
    found no page checksum errors; the WAL archive has no missing segment
    since the oldest backup; and, with ``check``, ``pgbackrest check`` passes
    (run once the rest holds: it forces a WAL switch). A pgbackrest call that
    fails counts as "not yet", with its message as what was seen.

    Under ``test=True`` it looks once, without ``pgbackrest check`` (which
    archives a WAL segment), and reports what it would wait for.

    :param name: state ID (free text).
    :param stanza: the pgBackRest stanza.
    :param max_age: largest acceptable age of the newest backup, in seconds.
    :param timeout: seconds to wait before giving up.
    :param interval: seconds between two looks.
    :param check: also run ``pgbackrest check``.
    :param options: config, runas, wal_segment_size for the pgbackrest module.
    :returns: a state return; on time-out the comment says what was seen last.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    max_age = int(max_age)
    unknown = sorted(k for k in options if not k.startswith("__") and k not in MODULE_KEYS)
    if unknown:
        ret["comment"] = f"Unknown keyword(s) {', '.join(unknown)}; allowed: {', '.join(MODULE_KEYS)}"
        return ret
    opts = {k: v for k, v in options.items() if k in MODULE_KEYS}
    want = f"a backup of stanza {stanza} younger than {max_age}s, a continuous WAL archive and nothing failing"
    # A dry run looks once, and does not run pgbackrest check (it archives a segment).
    dry_run = bool(__opts__.get("test"))
    full_timeout = timeout
    if dry_run:
        timeout = 0
    run_check = bool(check) and not dry_run

    def look():
        seen = __salt__["pgbackrest.health"](stanza, max_age=max_age, check=run_check, **opts)
        if seen["healthy"]:
            return True, _summary(seen) + (", pgbackrest check ok" if seen.get("checked") else "")
        return False, "; ".join(seen["problems"])

    done, last_seen, elapsed = __utils__["halite_wait.poll"](look, timeout, interval, time)
    if done:
        ret["result"] = True
        skipped = " (pgbackrest check not run under test=True)" if dry_run and check else ""
        ret["comment"] = f"Backups are fresh: {last_seen} (after {elapsed:.0f}s){skipped}"
        return ret
    if dry_run:
        ret["result"] = None
        ret["comment"] = f"Would wait up to {full_timeout}s for {want} (now: {last_seen})"
        return ret
    ret["comment"] = f"Timed out after {timeout}s waiting for {want}. Last seen: {last_seen}"
    return ret
