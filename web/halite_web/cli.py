"""python -m halite_web {migrate,seed,serve}"""
from __future__ import annotations

import argparse
import os
import sys

import psycopg


def _dsn(args) -> str:
    dsn = args.dsn or os.environ.get("HALITE_WEB_WRITE_DSN")
    if not dsn:
        sys.exit("error: give --dsn or set HALITE_WEB_WRITE_DSN")
    return dsn


def cmd_migrate(args) -> int:
    from .migrate import MigrationError, migrate
    try:
        migrate(_dsn(args), args.dir)
    except (MigrationError, psycopg.Error) as exc:
        print(f"migrate failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_seed(args) -> int:
    from .generator import SeedRefused, seed
    if args.cars < 0:
        print("--cars must be >= 0", file=sys.stderr)
        return 2
    try:
        seed(_dsn(args), args.cars, args.seed, force=args.force)
    except SeedRefused as exc:
        print(f"seed skipped: {exc}")
        return 0
    except psycopg.errors.UndefinedTable as exc:
        print(f"seed failed: {exc} (run `python -m halite_web migrate` first)", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args) -> int:
    from . import create_app
    overrides = {}
    if args.dsn:
        overrides["WRITE_DSN"] = args.dsn
    app = create_app(overrides)
    app.run(host=args.host, port=args.port, debug=args.debug, threaded=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m halite_web",
                                description="halite-web: car market on HA PostgreSQL")
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("migrate", help="apply pending SQL migrations (idempotent)")
    m.add_argument("--dsn", help="primary DSN (default: $HALITE_WEB_WRITE_DSN)")
    m.add_argument("--dir", help="migrations directory (default: web/migrations)")
    m.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("seed", help="generate realistic cars (skips if cars exist)")
    s.add_argument("--dsn", help="primary DSN (default: $HALITE_WEB_WRITE_DSN)")
    s.add_argument("--cars", type=int, default=3000, help="number of cars (default 3000)")
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    s.add_argument("--force", action="store_true", help="add cars even if some exist")
    s.set_defaults(fn=cmd_seed)

    v = sub.add_parser("serve", help="development server (use gunicorn in production)")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--dsn", help="write DSN (default: $HALITE_WEB_WRITE_DSN)")
    v.add_argument("--debug", action="store_true")
    v.set_defaults(fn=cmd_serve)

    args = p.parse_args(argv)
    return args.fn(args)
