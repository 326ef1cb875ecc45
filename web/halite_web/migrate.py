"""Numbered SQL migrations (web/migrations/NNN_name.sql).

Each file is applied in its own transaction together with its row in
schema_migrations(version, name, checksum, applied_at); an advisory lock
serialises concurrent runs, so `migrate` is idempotent and safe to run from
several web nodes at once.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATION_LOCK = 0x4841_4C57_4D49_4752  # "HALWMIGR"
FILE_RE = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")


def default_dir() -> Path:
    env = os.environ.get("HALITE_WEB_MIGRATIONS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class MigrationError(Exception):
    pass


def discover(directory: Path | None = None) -> list[Migration]:
    directory = Path(directory or default_dir())
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} not found")
    found: dict[int, Migration] = {}
    for p in sorted(directory.iterdir()):
        m = FILE_RE.match(p.name)
        if not m:
            continue
        v = int(m.group(1))
        if v in found:
            raise MigrationError(f"two migrations numbered {v}: {found[v].path.name}, {p.name}")
        found[v] = Migration(v, m.group(2), p)
    return [found[v] for v in sorted(found)]


BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


def migrate(dsn: str, directory: Path | None = None, log_fn=print) -> list[int]:
    """Apply pending migrations; return the versions applied (empty if none)."""
    migrations = discover(directory)
    applied_now: list[int] = []
    with psycopg.connect(dsn, connect_timeout=10, application_name="halite-web-migrate") as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise MigrationError("this server is a replica (in recovery): "
                                 "point --dsn at the primary")
        conn.rollback()
        for mig in migrations:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
                conn.execute(BOOTSTRAP)
                row = conn.execute("SELECT checksum FROM schema_migrations WHERE version = %s",
                                   [mig.version]).fetchone()
                if row:
                    if row[0] != mig.checksum:
                        log_fn(f"warning: {mig.path.name} changed after it was applied")
                    continue
                conn.execute(mig.sql.encode())
                conn.execute("INSERT INTO schema_migrations (version, name, checksum) "
                             "VALUES (%s, %s, %s)", [mig.version, mig.name, mig.checksum])
            applied_now.append(mig.version)
            log_fn(f"applied {mig.path.name}")
    if not applied_now:
        log_fn(f"schema up to date ({len(migrations)} migrations)")
    return applied_now


def applied_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
