#!/usr/bin/env python3
"""Checks of the car market, for Salt states (stateful output: the last line
is ``changed=no comment='...'``; the exit status says whether it passed).

  site-check moved
      The legacy server records a finished move (pg_move.move marks the app's
      role with halite.moved_at). Connects with $LEGACY_DSN, as the app.

  site-check serving --url URL [--ca FILE] --target T --expect-hosts H1,H2 --expect-port P
                     [--timeout S] [--downtime]
      The site answers through URL: /api/status names a primary on one of the
      hosts and that port, and /healthz?db=1 answers 200. With --ca, an https URL
      is verified against that CA alone (halite's: /etc/halite/tls/ca.crt), the
      URL's host (name or address) included. With --downtime it
      reports the time from the write freeze recorded on the legacy server
      (halite.write_freeze_started, read with $LEGACY_DSN) to that answer.

Managed by Salt (halite web.install); runs with the site's virtualenv Python.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import ssl
import sys
import time
import urllib.error
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_opener(ca_file: str | None):
    """A URL opener that never goes through a proxy; with ``ca_file``, https servers are
    verified against that CA only (system CAs are not trusted), names and addresses checked."""
    if not ca_file:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    context = ssl.create_default_context(cafile=ca_file)
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))


def report(ok: bool, comment: str, changed: bool = False) -> int:
    # Salt reads the last line as key=value words: no "=" inside a value.
    # changed=yes only to report a measurement (the move's downtime), so that
    # the orchestration's output carries it.
    print(f"changed={'yes' if changed else 'no'} comment={shlex.quote(comment.replace('=', ':'))}")
    return 0 if ok else 1


def legacy_settings(*names: str) -> dict:
    """The app role's settings on the legacy server, as its sessions see them."""
    import psycopg  # the site's virtualenv has it

    dsn = os.environ.get("LEGACY_DSN")
    if not dsn:
        raise RuntimeError("LEGACY_DSN is not set")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT " + ", ".join(["current_setting(%s, true)"] * len(names)), names).fetchone()
    return dict(zip(names, row))


def cmd_moved(_args) -> int:
    try:
        got = legacy_settings("halite.moved_at", "default_transaction_read_only")
    except Exception as exc:  # noqa: BLE001 - report, do not trace
        return report(False, f"cannot ask the legacy server whether the move finished: {exc}")
    if got["halite.moved_at"]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(got["halite.moved_at"])))
        return report(True, f"the legacy server records a finished move at {at}; "
                            f"writes there are {'frozen' if got['default_transaction_read_only'] == 'on' else 'NOT frozen'}")
    return report(False, "the legacy server records no finished move (pg_move.move): not switching the site")


def get_json(url: str, timeout: float):
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read().decode("utf-8"))
        except ValueError:
            return exc.code, None


def cmd_serving(args) -> int:
    global _OPENER
    try:
        _OPENER = make_opener(args.ca)
    except (OSError, ssl.SSLError) as exc:
        return report(False, f"cannot read the CA file {args.ca}: {exc}")
    base = args.url.rstrip("/") + "/"
    hosts = [h for h in args.expect_hosts.split(",") if h]
    deadline = time.monotonic() + args.timeout
    last = "no answer yet"
    while True:
        try:
            code, status = get_json(base + "api/status", 5)
            primary = (status or {}).get("primary") or {}
            where = f"{primary.get('host')}:{primary.get('port')}"
            if code != 200 or primary.get("host") not in hosts or primary.get("port") != args.expect_port:
                last = f"/api/status answered {code}, primary {where}; errors {(status or {}).get('errors')}"
            else:
                hcode, _ = get_json(base + "healthz?db=1", 5)
                if hcode == 200:
                    answered = time.time()
                    break
                last = f"/healthz?db=1 answered {hcode} (primary {where})"
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            return report(False, f"{base} did not answer from the {args.target} database "
                                 f"({','.join(hosts)} port {args.expect_port}) within {args.timeout:.0f} s; last: {last}")
        time.sleep(0.5)
    comment = f"{base} answers from the {args.target} database: primary {where}, read path ok"
    if args.downtime:
        try:
            started = legacy_settings("halite.write_freeze_started")["halite.write_freeze_started"]
            if started:
                comment += (f"; write downtime {answered - float(started):.1f} s "
                            f"(writes frozen on the legacy server at "
                            f"{time.strftime('%H:%M:%S', time.localtime(float(started)))}, "
                            f"site answering from the {args.target} at {time.strftime('%H:%M:%S', time.localtime(answered))})")
            else:
                comment += "; no write freeze recorded on the legacy server"
        except Exception as exc:  # noqa: BLE001
            comment += f"; write downtime unknown (legacy server: {exc})"
        return report(True, comment, changed=True)
    return report(True, comment)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="site-check", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("moved").set_defaults(fn=cmd_moved)
    s = sub.add_parser("serving")
    s.add_argument("--url", required=True)
    s.add_argument("--ca", help="the CA file an https URL is verified with")
    s.add_argument("--target", default="chosen")
    s.add_argument("--expect-hosts", required=True)
    s.add_argument("--expect-port", type=int, required=True)
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("--downtime", action="store_true")
    s.set_defaults(fn=cmd_serving)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
