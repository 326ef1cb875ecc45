"""
Move a PostgreSQL database onto another server by logical replication, with
writes stopped only for the last few seconds.

The sequence (:func:`move` runs all of it):

1. :func:`start`: a publication ``FOR ALL TABLES`` on the source, a
   subscription with ``copy_data`` on the target (the schema must already
   exist there).
2. :func:`wait_synced`: every table has finished its initial copy.
3. :func:`freeze`: the application's role becomes read-only on the source
   (``ALTER ROLE ... SET default_transaction_read_only = on``) and its open
   sessions are ended. Writes stop here; reads go on.
4. :func:`wait_caught_up`: the target has applied everything up to the
   source's WAL position after the freeze.
5. :func:`compare`: row count and checksum of every table, both sides. They
   must be identical.
6. :func:`sync_sequences`: every sequence on the target is set to the
   source's value, so the next id on the target follows the last one moved.
7. :func:`finish`: the subscription (and its replication slot) is dropped.

On any failed check :func:`move` unfreezes the source and drops the
subscription before it raises: the application stays on the source,
untouched. After a successful move the source *stays* frozen (a late write
there would be lost), and the role records ``halite.moved_at``, so a second
:func:`move` reports the earlier one instead of copying again.

Every database call goes through ``psql`` (the PostgreSQL client) in a
subprocess: salt-ssh's thin carries no database driver. Connections are libpq
DSNs (``"host=10.77.1.20 port=5433 dbname=carsale user=legacy_move
password=..."``); a password in a DSN is handed to psql in ``PGPASSWORD``,
never on its command line. ``runas`` runs psql as that operating-system user
(for peer authentication on a local socket, e.g. ``user=postgres``).

Every failure raises :class:`salt.exceptions.CommandExecutionError` naming the
step, which server (source or target) and the server's answer.
"""
from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "pg_move"

#: Seconds between two looks while waiting.
POLL_INTERVAL = 0.5
#: Seconds one psql call may take (a checksum of a large table takes a while).
PSQL_TIMEOUT = 600
#: Role settings the move leaves on the application's role.
FREEZE_SETTING = "halite.write_freeze_started"
MOVED_SETTING = "halite.moved_at"
#: Session settings that make the text of every row the same on both servers.
STABLE_TEXT = (
    "SET TimeZone = 'UTC';\n"
    "SET DateStyle = 'ISO, YMD';\n"
    "SET IntervalStyle = 'postgres';\n"
    "SET extra_float_digits = 3;\n"
    "SET bytea_output = 'hex';\n"
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: libpq's isspace() (C locale) and a conninfo keyword.
_SPACE = " \t\n\r\f\v"
_KEY = re.compile(r"[^ \t\n\r\f\v=]+")


def __virtual__():
    """Load where the ``psql`` client is installed."""
    if shutil.which("psql") is None:
        return (False, "pg_move needs the psql client (postgresql-client)")
    return __virtualname__


# ---------------------------------------------------------------------------
# psql boundary
# ---------------------------------------------------------------------------


def _parse_conninfo(dsn: str) -> list[tuple[str, str]] | None:
    """``[(keyword, value), ...]`` of a ``key=value`` DSN, by libpq's rules; None if it is not one.

    As ``conninfo_parse`` in libpq's fe-connect.c: spaces around ``=`` are
    allowed; a value is either single-quoted or runs to the next space; in
    both, a backslash takes the next character literally.
    """
    pairs, pos, end = [], 0, len(dsn)
    while True:
        while pos < end and dsn[pos] in _SPACE:
            pos += 1
        if pos >= end:
            return pairs
        m = _KEY.match(dsn, pos)
        if not m:
            return None
        key, pos = m.group(0), m.end()
        while pos < end and dsn[pos] in _SPACE:
            pos += 1
        if pos >= end or dsn[pos] != "=":
            return None
        pos += 1
        while pos < end and dsn[pos] in _SPACE:
            pos += 1
        value, quoted = [], pos < end and dsn[pos] == "'"
        pos += 1 if quoted else 0
        while pos < end:
            ch = dsn[pos]
            if ch == "\\":
                if pos + 1 < end:
                    value.append(dsn[pos + 1])
                pos += 2
                continue
            if (quoted and ch == "'") or (not quoted and ch in _SPACE):
                break
            value.append(ch)
            pos += 1
        if quoted:
            if pos >= end:
                return None  # unterminated quoted value
            pos += 1
        pairs.append((key, "".join(value)))


def _conninfo_value(value: str) -> str:
    """One conninfo value, escaped as psycopg's make_conninfo does (see halite.formats.conninfo)."""
    value = re.sub(r"([\\'])", r"\\\1", value)
    return f"'{value}'" if not value or re.search(r"\s", value) else value


def _split_password(dsn: str) -> tuple[str, str | None]:
    """``(dsn without its password, password)`` for a key=value DSN.

    URIs and strings that do not parse are returned unchanged.
    """
    pairs = _parse_conninfo(dsn)
    if pairs is None:
        return dsn, None
    password = None
    kept = []
    for key, value in pairs:
        if key == "password":
            password = value
        else:
            kept.append(f"{key}={_conninfo_value(value)}")
    return " ".join(kept), password


def _redact(dsn: str) -> str:
    return _split_password(dsn)[0]


def _lit(value) -> str:
    """A SQL string literal, right whatever standard_conforming_strings is.

    ``'`` doubled; with a backslash, ``E'...'`` and the backslashes doubled
    (PostgreSQL's quote_literal). The same as halite.formats.sql_literal
    (psycopg's sql.Literal), which the unit tests check; here without psycopg,
    which salt-ssh does not ship to the hosts.
    """
    value = str(value).replace("'", "''")
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\") + "'"
    return "'" + value + "'"


def _ident(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + str(name).replace('"', '""') + '"'


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CommandExecutionError(f"pg_move: {kind} name {name!r} is not a plain identifier (letters, digits, _)")
    return name


def _psql(dsn: str, sql: str, step: str, server: str, runas: str | None = None, timeout: float = PSQL_TIMEOUT,
          module: str = "pg_move") -> str:
    """Run ``sql`` through psql on one server; return its output (unaligned, no headers).

    ``module`` names the caller in error messages (the pgbackrest module runs
    its SQL through this boundary too).

    :raises CommandExecutionError: naming the step, the server and psql's error.
    """
    conn, password = _split_password(dsn)
    env = dict(os.environ, PGCONNECT_TIMEOUT=os.environ.get("PGCONNECT_TIMEOUT", "10"))
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn, "-f", "-"]
    where = f"{module} {step}: {server} server ({_redact(dsn)})"
    if runas and runas != pwd.getpwuid(os.geteuid()).pw_name:
        if os.geteuid() != 0:
            raise CommandExecutionError(f"{where}: cannot run psql as {runas}: not root")
        cmd = ["runuser", "-u", runas, "--", *cmd]
    log.debug("%s: %s", where, sql)
    try:
        res = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env, cwd="/", timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(f"{where}: no answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise CommandExecutionError(f"{where}: cannot run psql: {exc}") from exc
    if res.returncode != 0:
        err = (res.stderr or res.stdout).strip() or f"psql exited {res.returncode}"
        raise CommandExecutionError(f"{where}: {err}")
    return res.stdout


def _json(dsn: str, sql: str, step: str, server: str, runas: str | None = None, module: str = "pg_move"):
    """Run SQL whose last statement selects one JSON value; return it parsed."""
    out = _psql(dsn, sql, step, server, runas, module=module).strip()
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CommandExecutionError(
            f"{module} {step}: {server} server ({_redact(dsn)}) answered {out[:300]!r}, not JSON") from exc


# ---------------------------------------------------------------------------
# tables and checksums
# ---------------------------------------------------------------------------

_TABLES_SQL = r"""
SELECT coalesce(json_agg(json_build_object(
         'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
         'columns', (SELECT coalesce(json_agg(a.attname ORDER BY a.attnum), '[]')
                       FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
         'primary_key', (SELECT coalesce(json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)), '[]')
                           FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
                          WHERE i.indrelid = c.oid AND i.indisprimary))
       ORDER BY n.nspname, c.relname), '[]')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'halite') AND n.nspname NOT LIKE 'pg\_%';
"""


def tables(dsn, runas=None):
    """The user tables of a database: name, columns and primary key of each.

    :param dsn: libpq DSN of the database.
    :param runas: operating-system user to run psql as (peer authentication).
    :returns: list of ``{"table": "public.cars", "columns": [...], "primary_key": [...]}``,
        sorted by schema and name.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.tables "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    return _table_list(dsn, runas, "tables")


def _filled(dsn: str, names: list[str], step: str, runas) -> dict:
    """``{table: rows}`` of the tables ``names`` that hold at least one row (on the target)."""
    sql = ("SELECT coalesce(json_object_agg(t, n), '{}') FROM (" + " UNION ALL ".join(
        f"SELECT {_lit(n)} AS t, (SELECT count(*) FROM {n}) AS n" for n in names) + ") x WHERE n > 0;")
    return _json(dsn, sql, step, "target", runas)


def _table_list(dsn: str, runas, step: str) -> list[dict]:
    """:func:`tables`, with the caller's step in error messages."""
    return _json(dsn, _TABLES_SQL, step, "database", runas)


def _named(specs: list[dict], names) -> list[dict]:
    """The specs of the tables ``names`` (``schema.table`` as :func:`tables` lists them; a bare name is in public)."""
    if names is None:
        return specs
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {s["table"]: s for s in specs}
    picked, unknown = [], []
    for name in names:
        spec = by_name.get(name) or by_name.get(f"public.{name}")
        if spec is None:
            unknown.append(name)
        elif spec not in picked:
            picked.append(spec)
    if unknown:
        raise CommandExecutionError(
            f"pg_move checksums: no table {', '.join(unknown)} in the database; "
            f"its tables are {', '.join(by_name) or '(none)'}")
    return picked


def _checksums_sql(specs: list[dict]) -> str:
    if not specs:
        return "SELECT '{}'::json;"
    parts = []
    for spec in specs:
        cols = sorted(spec["columns"])
        row = "ROW(" + ", ".join(_ident(c) for c in cols) + ")::text" if cols else "''"
        order = ", ".join(_ident(c) for c in spec["primary_key"]) or f"md5({row})"
        parts.append(
            f"SELECT {_lit(spec['table'])} AS t, count(*) AS n, "
            f"md5(coalesce(string_agg(md5({row}), '' ORDER BY {order}), '')) AS h FROM {spec['table']}"
        )
    return (STABLE_TEXT + "SELECT coalesce(json_object_agg(t, json_build_object('rows', n, 'md5', h)), '{}') FROM (\n"
            + "\nUNION ALL\n".join(parts) + "\n) x;")


def _checksums(dsn: str, specs: list[dict], step: str, server: str, runas) -> dict:
    """``{table: {"rows", "md5"}}`` of the tables ``specs``, read in one statement (one snapshot)."""
    return _json(dsn, _checksums_sql(specs), step, server, runas)


def checksums(dsn, runas=None, tables=None):  # pylint: disable=redefined-outer-name
    """Row count and checksum of every user table of a database (or of the tables named).

    The checksum is the md5 over the md5 of each row's text (its columns in
    name order), rows ordered by primary key, read in UTC with ISO dates: the
    same data gives the same checksum on any server. All tables are read in
    one statement, so they show one moment of the database. The same numbers
    as :func:`compare` and ``pgbackrest.restore_point``.

    :param dsn: libpq DSN of the database.
    :param runas: operating-system user to run psql as (peer authentication).
    :param tables: None for every user table, or a list (or comma-separated
        string) of names as :func:`tables` lists them (``public.cars``; a bare
        ``cars`` means ``public.cars``).
    :returns: ``{"public.cars": {"rows": 200, "md5": "..."}, ...}``.
    :raises CommandExecutionError: naming a table that is not in the database, or psql's error.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.checksums "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
        salt-ssh db-01 pg_move.checksums "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres tables=public.cars,public.makes
    """
    specs = _named(_table_list(dsn, runas, "checksums"), tables)
    return _checksums(dsn, specs, "checksums", "database", runas)


def compare(source_dsn, target_dsn, runas=None):
    """Row count and checksum of every source table, on the source and on the target.

    The checksum is the md5 over the md5 of each row's text (its columns in
    name order), rows ordered by primary key; both sessions use UTC and ISO
    dates, so equal data gives equal checksums.

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param runas: operating-system user to run psql as.
    :returns: ``{"identical": bool, "tables": {table: {"source": {"rows", "md5"},
        "target": {"rows", "md5"}}}, "differences": ["public.cars: rows 200 on the
        source, 199 on the target", ...]}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.compare "host=10.77.1.20 port=5433 dbname=carsale user=legacy_move password=..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    src_specs = tables(source_dsn, runas)
    tgt_specs = {t["table"]: t for t in tables(target_dsn, runas)}
    differences, comparable = [], []
    for spec in src_specs:
        other = tgt_specs.get(spec["table"])
        if other is None:
            differences.append(f"{spec['table']}: missing on the target")
        elif sorted(other["columns"]) != sorted(spec["columns"]):
            differences.append(
                f"{spec['table']}: columns differ (source {sorted(spec['columns'])}, target {sorted(other['columns'])})")
        else:
            comparable.append(spec)
    # the target's rows are read in the source's column and key order, so equal data gives equal checksums
    src = _checksums(source_dsn, src_specs, "compare", "source", runas)
    tgt = _checksums(target_dsn, comparable, "compare", "target", runas)
    out = {}
    for spec in src_specs:
        name = spec["table"]
        s, t = src.get(name), tgt.get(name)
        out[name] = {"source": s, "target": t}
        if s is None or t is None:
            continue
        if s["rows"] != t["rows"]:
            differences.append(f"{name}: {s['rows']} rows on the source, {t['rows']} on the target")
        elif s["md5"] != t["md5"]:
            differences.append(f"{name}: same row count ({s['rows']}) but the contents differ (checksum)")
    return {"identical": not differences, "tables": out, "differences": differences}


# ---------------------------------------------------------------------------
# publication and subscription
# ---------------------------------------------------------------------------


def _subscription_exists(target_dsn: str, subscription: str, step: str, runas) -> bool:
    sql = ("SELECT to_json(EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
           f"WHERE d.datname = current_database() AND s.subname = {_lit(subscription)}));")
    return bool(_json(target_dsn, sql, step, "target", runas))


def start(source_dsn, target_dsn, source_conninfo_for_target=None, publication="halite_move",
          subscription="halite_move", overwrite=False, expendable=None, runas=None):
    """Begin replicating: a publication on the source, a subscription on the target.

    The publication (``FOR ALL TABLES``) is created if missing. The target
    must already hold every source table (run the schema migrations there
    first) and they must be empty: a target table that holds rows is refused,
    naming every such table and its row count, and nothing is changed, unless
    ``overwrite`` is set (then they are emptied). The ``expendable`` tables
    are emptied without asking: bookkeeping the target's own schema step
    fills (the migration tool's list of applied migrations), which the copy
    brings over again. The subscription then copies the existing rows and
    streams every change. If the subscription exists already, nothing is
    changed.

    :param source_dsn: libpq DSN of the source database (a superuser there).
    :param target_dsn: libpq DSN of the target database (a superuser there).
    :param source_conninfo_for_target: how the *target server* reaches the
        source (stored in the subscription); default: ``source_dsn``.
    :param publication: publication name on the source.
    :param subscription: subscription (and replication slot) name on the target.
    :param overwrite: empty the target's copies of the source tables that hold rows
        (they would be lost: off, such a target is refused).
    :param expendable: tables (``schema.table``) emptied whatever ``overwrite`` says.
    :param runas: operating-system user to run psql as.
    :returns: ``{"publication": "created"|"exists", "subscription": "created"|"exists",
        "tables": n, "truncated": [...]}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.start "host=10.77.1.20 port=5433 dbname=carsale user=legacy_move password=..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    _check_name("publication", publication)
    _check_name("subscription", subscription)
    conninfo = source_conninfo_for_target or source_dsn
    if _subscription_exists(target_dsn, subscription, "start", runas):
        return {"publication": "exists", "subscription": "exists", "tables": None, "truncated": []}

    level = _psql(source_dsn, "SHOW wal_level;", "start", "source", runas).strip()
    if level != "logical":
        raise CommandExecutionError(
            f"pg_move start: source server ({_redact(source_dsn)}) has wal_level={level}; "
            "it needs wal_level=logical (and a restart) to publish")
    src = tables(source_dsn, runas)
    tgt = {t["table"] for t in tables(target_dsn, runas)}
    missing = [t["table"] for t in src if t["table"] not in tgt]
    if missing:
        raise CommandExecutionError(
            f"pg_move start: target server ({_redact(target_dsn)}) lacks {', '.join(missing)}: "
            "create the schema there first (the schema migrations), then start again")
    names = [t["table"] for t in src]
    truncated = []
    expendable = set(expendable or ())
    if names:
        rows = _filled(target_dsn, names, "start", runas)
        kept = {n: c for n, c in rows.items() if n not in expendable}
        if kept and not overwrite:
            listed = ", ".join(f"{n} ({c} row{'s' if c != 1 else ''})" for n, c in sorted(kept.items()))
            raise CommandExecutionError(
                f"pg_move start: target server ({_redact(target_dsn)}) already holds rows in {listed}: "
                "the initial copy would replace them, so nothing was changed. If they are not needed "
                "(an earlier test copy, not orders taken since a move), empty them or start again with "
                "overwrite=True (orch.migrate: move.overwrite_target: true)")
        if rows:
            # every copy at once: a foreign key between them would refuse a part
            _psql(target_dsn, f"TRUNCATE {', '.join(names)};", "start (truncate)", "target", runas)
            truncated = sorted(rows)

    exists = _json(source_dsn, f"SELECT to_json(EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {_lit(publication)}));",
                   "start", "source", runas)
    if not exists:
        _psql(source_dsn, f"CREATE PUBLICATION {_ident(publication)} FOR ALL TABLES;", "start (publication)", "source", runas)
    _psql(target_dsn,
          f"CREATE SUBSCRIPTION {_ident(subscription)} CONNECTION {_lit(conninfo)} "
          f"PUBLICATION {_ident(publication)} WITH (copy_data = true);",
          "start (subscription)", "target", runas)
    return {"publication": "exists" if exists else "created", "subscription": "created",
            "tables": len(names), "truncated": truncated}


def status(source_dsn, target_dsn, publication="halite_move", subscription="halite_move", runas=None):
    """Where replication stands: each table's initial-sync state and the lag.

    Table states (``pg_subscription_rel.srsubstate``): ``i`` initialising,
    ``d`` copying data, ``f`` copy finished, ``s`` synchronised, ``r`` ready
    (streaming).

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param publication: publication name on the source.
    :param subscription: subscription name on the target.
    :param runas: operating-system user to run psql as.
    :returns: ``{"subscription": bool, "enabled", "tables": {table: state},
        "published": n, "synced": bool, "source_lsn", "target_lsn", "lag_bytes",
        "slot_active"}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.status "host=10.77.1.20 port=5433 dbname=carsale user=legacy_move password=..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    _check_name("publication", publication)
    _check_name("subscription", subscription)
    sub = _lit(subscription)
    tgt = _json(target_dsn, f"""
SELECT json_build_object(
  'subscription', s.oid IS NOT NULL,
  'enabled', s.subenabled,
  'tables', (SELECT coalesce(json_object_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname), r.srsubstate::text), '{{}}')
               FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE r.srsubid = s.oid),
  'target_lsn', (SELECT max(latest_end_lsn)::text FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL))
FROM (SELECT 1) one
LEFT JOIN pg_subscription s ON s.subname = {sub} AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database());
""", "status", "target", runas)
    src = _json(source_dsn, f"""
SELECT json_build_object(
  'source_lsn', pg_current_wal_lsn()::text,
  'published', (SELECT count(*) FROM pg_publication_tables WHERE pubname = {_lit(publication)}),
  'slot_active', (SELECT active FROM pg_replication_slots WHERE slot_name = {sub}),
  'slot_lag_bytes', (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
                       FROM pg_replication_slots WHERE slot_name = {sub}));
""", "status", "source", runas)
    states = tgt["tables"] or {}
    lag = None
    if tgt["target_lsn"]:
        lag = _lsn(src["source_lsn"]) - _lsn(tgt["target_lsn"])
    return {
        "subscription": bool(tgt["subscription"]),
        "enabled": tgt["enabled"],
        "tables": states,
        "published": src["published"],
        "synced": bool(states) and len(states) >= src["published"] and all(v == "r" for v in states.values()),
        "source_lsn": src["source_lsn"],
        "target_lsn": tgt["target_lsn"],
        "lag_bytes": lag,
        "slot_active": src["slot_active"],
        "slot_lag_bytes": src["slot_lag_bytes"],
    }


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_synced(source_dsn, target_dsn, publication="halite_move", subscription="halite_move", timeout=1800, runas=None):
    """Wait until every published table has finished its initial copy (state ``r``).

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param publication: publication name on the source.
    :param subscription: subscription name on the target.
    :param timeout: seconds to wait.
    :param runas: operating-system user to run psql as.
    :returns: the last :func:`status`, plus ``waited_s``.
    :raises CommandExecutionError: on time-out, with each table's state.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.wait_synced "host=10.77.1.20 port=5433 ..." "host=/var/run/postgresql dbname=carsale user=postgres" timeout=600 runas=postgres
    """
    began = time.monotonic()
    while True:
        st = status(source_dsn, target_dsn, publication, subscription, runas)
        if not st["subscription"]:
            raise CommandExecutionError(
                f"pg_move wait_synced: target server ({_redact(target_dsn)}) has no subscription {subscription}")
        if st["synced"]:
            st["waited_s"] = round(time.monotonic() - began, 3)
            return st
        if time.monotonic() - began > float(timeout):
            pending = {t: s for t, s in st["tables"].items() if s != "r"}
            raise CommandExecutionError(
                f"pg_move wait_synced: initial copy not finished after {float(timeout):.0f} s on the target server "
                f"({_redact(target_dsn)}): {len(st['tables'])} of {st['published']} tables known, not ready: "
                f"{pending or 'none'} (states: i init, d copying, f copied, s synchronised); see the target's log")
        time.sleep(POLL_INTERVAL)


# ---------------------------------------------------------------------------
# freezing writes
# ---------------------------------------------------------------------------


def frozen(source_dsn, role, runas=None):
    """Whether the role is frozen (read-only) on the source, and since when.

    :param source_dsn: libpq DSN of the source database.
    :param role: the application's role.
    :param runas: operating-system user to run psql as.
    :returns: ``{"role", "read_only": bool, "write_freeze_started": epoch seconds or None,
        "moved_at": epoch seconds or None}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.frozen "host=10.77.1.20 port=5433 ..." carsale
    """
    _check_name("role", role)
    data = _json(source_dsn, f"""
SELECT json_build_object(
  'exists', EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(role)}),
  'settings', (SELECT coalesce(json_agg(c), '[]') FROM pg_db_role_setting s
                 JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
                WHERE r.rolname = {_lit(role)} AND s.setdatabase = 0));
""", "frozen", "source", runas)
    if not data["exists"]:
        raise CommandExecutionError(f"pg_move frozen: source server ({_redact(source_dsn)}) has no role {role}")
    settings = dict(c.split("=", 1) for c in data["settings"])

    def epoch(key):
        try:
            return float(settings[key])
        except (KeyError, ValueError):
            return None

    return {
        "role": role,
        "read_only": settings.get("default_transaction_read_only", "off").lower() in ("on", "true", "1", "yes"),
        "write_freeze_started": epoch(FREEZE_SETTING),
        "moved_at": epoch(MOVED_SETTING),
    }


def freeze(source_dsn, role, runas=None):
    """Stop the role's writes on the source; its reads go on.

    ``ALTER ROLE <role> SET default_transaction_read_only = on`` (new sessions
    cannot write; the application answers writes with "try again"), records
    the moment in the role setting ``halite.write_freeze_started`` (the
    source's clock), then ends the role's open sessions, twice, so no session
    that began before the change keeps writing.

    :param source_dsn: libpq DSN of the source database (a superuser there).
    :param role: the application's role.
    :param runas: operating-system user to run psql as.
    :returns: ``{"role", "write_freeze_started": epoch seconds, "terminated": n}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.freeze "host=10.77.1.20 port=5433 ..." carsale
    """
    _check_name("role", role)
    kill = (f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE usename = {_lit(role)} AND pid <> pg_backend_pid()")
    data = _json(source_dsn, f"""
ALTER ROLE {_ident(role)} SET default_transaction_read_only = on;
DO $halite$ BEGIN
  EXECUTE format('ALTER ROLE %I SET {FREEZE_SETTING} = %L', {_lit(role)}, extract(epoch FROM clock_timestamp())::text);
END $halite$;
CREATE TEMP TABLE halite_killed AS {kill};
SELECT pg_sleep(0.2);
INSERT INTO halite_killed {kill};
SELECT json_build_object('terminated', (SELECT sum(count) FROM halite_killed),
  'started', (SELECT split_part(c, '=', 2) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
               WHERE r.rolname = {_lit(role)} AND s.setdatabase = 0 AND c LIKE {_lit(FREEZE_SETTING + '=%')}));
""", "freeze", "source", runas)
    return {"role": role, "write_freeze_started": float(data["started"]), "terminated": int(data["terminated"] or 0)}


def unfreeze(source_dsn, role, runas=None):
    """Let the role write on the source again (undoes :func:`freeze` and a finished move's mark).

    :param source_dsn: libpq DSN of the source database (a superuser there).
    :param role: the application's role.
    :param runas: operating-system user to run psql as.
    :returns: ``{"role", "read_only": False}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.unfreeze "host=10.77.1.20 port=5433 ..." carsale
    """
    _check_name("role", role)
    _psql(source_dsn, (
        f"ALTER ROLE {_ident(role)} RESET default_transaction_read_only;\n"
        f"ALTER ROLE {_ident(role)} RESET {FREEZE_SETTING};\n"
        f"ALTER ROLE {_ident(role)} RESET {MOVED_SETTING};\n"), "unfreeze", "source", runas)
    return {"role": role, "read_only": False}


# ---------------------------------------------------------------------------
# catching up, sequences, cleaning up
# ---------------------------------------------------------------------------


def wait_caught_up(source_dsn, target_dsn, subscription="halite_move", timeout=120, runas=None):
    """Wait until the target has applied everything the source wrote so far.

    Takes the source's current WAL position, then waits for the target's
    subscription to report (``pg_stat_subscription.latest_end_lsn``) that
    position or a later one. Call it after :func:`freeze`.

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param subscription: subscription name on the target.
    :param timeout: seconds to wait.
    :param runas: operating-system user to run psql as.
    :returns: ``{"source_lsn", "target_lsn", "waited_s"}``.
    :raises CommandExecutionError: on time-out, with both positions.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.wait_caught_up "host=10.77.1.20 port=5433 ..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    _check_name("subscription", subscription)
    began = time.monotonic()
    lsn = _psql(source_dsn, "SELECT pg_current_wal_lsn();", "wait_caught_up", "source", runas).strip()
    sql = (f"SELECT to_json(max(w.latest_end_lsn)::text) FROM pg_stat_subscription w "
           f"JOIN pg_subscription s ON s.oid = w.subid WHERE s.subname = {_lit(subscription)} AND w.relid IS NULL;")
    seen = None
    while True:
        seen = _json(target_dsn, sql, "wait_caught_up", "target", runas)
        if seen and _lsn(seen) >= _lsn(lsn):
            return {"source_lsn": lsn, "target_lsn": seen, "waited_s": round(time.monotonic() - began, 3)}
        if time.monotonic() - began > float(timeout):
            raise CommandExecutionError(
                f"pg_move wait_caught_up: the target server ({_redact(target_dsn)}) applied up to {seen or 'nothing'} "
                f"after {float(timeout):.0f} s; the source ({_redact(source_dsn)}) is at {lsn} "
                f"(is the subscription's apply worker running? see the target's log)")
        time.sleep(POLL_INTERVAL / 5)


def sync_sequences(source_dsn, target_dsn, runas=None):
    """Set every sequence on the target to the source's value (identity columns included).

    Logical replication copies rows, not sequence positions: without this the
    target would hand out ids the source already used.

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param runas: operating-system user to run psql as.
    :returns: ``{sequence: last value (None: never used)}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.sync_sequences "host=10.77.1.20 port=5433 ..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    seqs = _json(source_dsn, """
SELECT coalesce(json_agg(json_build_object(
         'sequence', quote_ident(schemaname) || '.' || quote_ident(sequencename),
         'last_value', last_value, 'start_value', start_value) ORDER BY schemaname, sequencename), '[]')
  FROM pg_sequences;
""", "sync_sequences", "source", runas)
    if not seqs:
        return {}
    lines = []
    for s in seqs:
        if s["last_value"] is None:
            lines.append(f"SELECT setval({_lit(s['sequence'])}, {int(s['start_value'])}, false);")
        else:
            lines.append(f"SELECT setval({_lit(s['sequence'])}, {int(s['last_value'])}, true);")
    _psql(target_dsn, "BEGIN;\n" + "\n".join(lines) + "\nCOMMIT;\n", "sync_sequences", "target", runas)
    return {s["sequence"]: s["last_value"] for s in seqs}


def finish(source_dsn, target_dsn, subscription="halite_move", runas=None):
    """Drop the subscription on the target, and its replication slot on the source.

    When the source cannot be reached, the subscription is detached from its
    slot and dropped anyway; the slot is then dropped on the source if it can
    be reached, else reported as left behind.

    :param source_dsn: libpq DSN of the source database.
    :param target_dsn: libpq DSN of the target database.
    :param subscription: subscription (and slot) name.
    :param runas: operating-system user to run psql as.
    :returns: ``{"subscription": "dropped"|"absent", "slot": "dropped"|"absent"|"left: <why>"}``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.finish "host=10.77.1.20 port=5433 ..." "host=/var/run/postgresql dbname=carsale user=postgres" runas=postgres
    """
    _check_name("subscription", subscription)
    out = {"subscription": "absent", "slot": "absent"}
    if _subscription_exists(target_dsn, subscription, "finish", runas):
        try:
            _psql(target_dsn, f"DROP SUBSCRIPTION {_ident(subscription)};", "finish", "target", runas)
        except CommandExecutionError as exc:
            log.warning("%s; dropping the subscription without its slot", exc)
            _psql(target_dsn, (f"ALTER SUBSCRIPTION {_ident(subscription)} DISABLE;\n"
                               f"ALTER SUBSCRIPTION {_ident(subscription)} SET (slot_name = NONE);\n"
                               f"DROP SUBSCRIPTION {_ident(subscription)};\n"), "finish (detached)", "target", runas)
        out["subscription"] = "dropped"
    try:
        dropped = _json(source_dsn, (
            f"SELECT to_json(count(pg_drop_replication_slot(slot_name))) FROM pg_replication_slots "
            f"WHERE slot_name = {_lit(subscription)} AND NOT active;"), "finish", "source", runas)
        if dropped:
            out["slot"] = "dropped"
    except CommandExecutionError as exc:
        out["slot"] = f"left: {exc}"
    return out


# ---------------------------------------------------------------------------
# the whole move
# ---------------------------------------------------------------------------


def move(source_dsn, target_dsn, source_conninfo_for_target=None, role=None, publication="halite_move",
         subscription="halite_move", sync_timeout=1800, catchup_timeout=120, overwrite=False, expendable=None,
         runas=None):
    """Move the database from the source to the target; writes stop only at the end.

    start, wait for the initial copy, freeze the role's writes on the source,
    wait until the target caught up, compare every table (must be identical),
    copy the sequence positions, drop the subscription. Then switch the
    application to the target at once: the source stays frozen.

    The target's tables must be empty (see :func:`start`): a target that
    holds rows, say the orders the site took on it since an earlier move, is
    refused with its tables and row counts, and nothing is changed, unless
    ``overwrite`` is set.

    On any failure the source is unfrozen, the subscription dropped and the
    partial copy emptied (the tables were empty when this move began; the
    ``expendable`` ones keep the source's copy) before
    the error is raised: the application stays on the source, and the next
    move starts from empty tables. A move that finished earlier (the role
    carries ``halite.moved_at``) is reported, not repeated; a source frozen
    by an unfinished move is refused.

    :param source_dsn: libpq DSN of the source database (a superuser there).
    :param target_dsn: libpq DSN of the target database (a superuser there).
    :param source_conninfo_for_target: how the target server reaches the source; default ``source_dsn``.
    :param role: the application's role (frozen on the source).
    :param publication: publication name on the source.
    :param subscription: subscription and slot name.
    :param sync_timeout: seconds allowed for the initial copy.
    :param catchup_timeout: seconds allowed, writes frozen, for the target to catch up.
    :param overwrite: empty target tables that hold rows (off: refuse such a target).
    :param expendable: tables (``schema.table``) emptied on the target whatever
        ``overwrite`` says (the migration tool's bookkeeping).
    :param runas: operating-system user to run psql as.
    :returns: ``{"ok": True, "already_moved": bool, "write_freeze_started": epoch (source clock),
        "ready_at": epoch, "downtime_s": freeze to ready-to-switch, "initial_sync_s",
        "catch_up_s", "source_lsn", "tables": {table: {"rows", "md5"}},
        "sequences": {...}, "source_frozen": True}``.
    :raises CommandExecutionError: naming the step that failed and what differed.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 pg_move.move "host=10.77.1.20 port=5433 dbname=carsale user=legacy_move password=..." "host=/var/run/postgresql dbname=carsale user=postgres" role=carsale runas=postgres
    """
    if not role:
        raise CommandExecutionError("pg_move move: give role= (the application's role, frozen on the source)")
    before = frozen(source_dsn, role, runas)
    if before["moved_at"]:
        return {"ok": True, "already_moved": True, "write_freeze_started": before["write_freeze_started"],
                "ready_at": before["moved_at"], "downtime_s": None, "source_frozen": before["read_only"],
                "comment": f"moved earlier; role {role} on the source is read-only since the move"}
    if before["read_only"]:
        raise CommandExecutionError(
            f"pg_move move: role {role} is already read-only on the source ({_redact(source_dsn)}) but no move "
            "finished: an earlier move was interrupted, or someone froze it. Check, then pg_move.unfreeze and run again")
    if _subscription_exists(target_dsn, subscription, "move", runas):
        raise CommandExecutionError(
            f"pg_move move: the target ({_redact(target_dsn)}) already has a subscription {subscription} "
            "(an interrupted move?): pg_move.finish drops it")

    step = "start"
    froze = copied = False
    report = {"ok": False, "already_moved": False}
    began = time.monotonic()
    try:
        report["start"] = start(source_dsn, target_dsn, source_conninfo_for_target, publication, subscription,
                                overwrite=overwrite, expendable=expendable, runas=runas)
        copied = report["start"]["tables"] is not None
        step = "wait_synced"
        synced = wait_synced(source_dsn, target_dsn, publication, subscription, sync_timeout, runas)
        report["initial_sync_s"] = round(time.monotonic() - began, 3)
        report["tables_synced"] = len(synced["tables"])

        step = "freeze"
        t_freeze = time.monotonic()
        fr = freeze(source_dsn, role, runas)
        froze = True
        report["write_freeze_started"] = fr["write_freeze_started"]
        report["sessions_ended"] = fr["terminated"]

        step = "wait_caught_up"
        caught = wait_caught_up(source_dsn, target_dsn, subscription, catchup_timeout, runas)
        report["catch_up_s"] = caught["waited_s"]
        report["source_lsn"] = caught["source_lsn"]

        step = "compare"
        cmp = compare(source_dsn, target_dsn, runas)
        if not cmp["identical"]:
            raise CommandExecutionError("source and target differ after catching up: " + "; ".join(cmp["differences"]))
        report["tables"] = {t: v["source"] for t, v in cmp["tables"].items()}

        step = "sync_sequences"
        report["sequences"] = sync_sequences(source_dsn, target_dsn, runas)

        step = "finish"
        report["finish"] = finish(source_dsn, target_dsn, subscription, runas)

        step = "mark moved"
        moved_at = time.time()
        _psql(source_dsn, f"ALTER ROLE {_ident(role)} SET {MOVED_SETTING} = {_lit(f'{moved_at:.3f}')};",
              "move (mark moved)", "source", runas)
        report["downtime_s"] = round(time.monotonic() - t_freeze, 3)
        report["ready_at"] = round(moved_at, 3)
    except Exception as exc:  # pylint: disable=broad-except
        cleanup = []
        try:
            if finish(source_dsn, target_dsn, subscription, runas)["subscription"] == "dropped":
                cleanup.append(f"subscription {subscription} dropped")
        except Exception as cexc:  # pylint: disable=broad-except
            cleanup.append(f"could not drop subscription {subscription}: {cexc}")
        if froze or step == "freeze":
            try:
                unfreeze(source_dsn, role, runas)
                cleanup.append(f"role {role} unfrozen on the source")
            except Exception as cexc:  # pylint: disable=broad-except
                cleanup.append(f"could NOT unfreeze role {role} on the source: {cexc}")
        if copied:
            # this move's copy, into tables that were empty (or emptied) when it began
            try:
                # the bookkeeping stays: the copy brought the source's, which the schema matches
                names = [t["table"] for t in tables(source_dsn, runas) if t["table"] not in set(expendable or ())]
                if names:
                    _psql(target_dsn, f"TRUNCATE {', '.join(names)};", "move (empty the copy)", "target", runas)
                cleanup.append("the partial copy on the target emptied")
            except Exception as cexc:  # pylint: disable=broad-except
                cleanup.append(f"could not empty the partial copy on the target: {cexc}")
        raise CommandExecutionError(
            f"pg_move move failed at {step}: {exc}; {''.join(c + '; ' for c in cleanup)}"
            "the application stays on the source") from exc
    report["ok"] = True
    report["source_frozen"] = True
    report["comment"] = (f"target holds the same {len(report['tables'])} tables; writes frozen "
                         f"{report['downtime_s']} s so far: switch the application to the target now")
    return report
