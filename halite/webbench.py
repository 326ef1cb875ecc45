"""A small, bounded HTTP load generator for halite-web (stdlib only).

:func:`run` sends GET requests to one base URL from ``concurrency`` threads, each
with its own keep-alive connection, and reports per page: ``requests``,
``ok`` (2xx), ``non_2xx``, ``errors`` (transport failures: refused, reset,
timeout), ``rps`` (2xx responses per second of the measured window), and the
latency percentiles ``p50_ms``/``p90_ms``/``p99_ms``/``max_ms`` of every
answered request (nearest-rank).  A path may contain ``{id}``: each request
takes the next id of ``car_ids`` (round robin), e.g. ``/cars/{id}``.

Two modes: ``"each"`` (default) gives every page its own window of
``warmup_s + duration_s`` one after the other, so ``rps`` is that page's own
throughput; ``"mix"`` interleaves all pages in a single window.

It is bounded: only the given base URLs (and the ``--car-ids-from`` URL) are
contacted, every window ends after ``warmup_s + duration_s`` (a request still in
flight is cut by the socket ``timeout_s``), and ``max_requests`` caps the
requests sent by one :func:`run` call, warm-up included.

:func:`compare` benchmarks several targets (``{"old": url, "cluster": url}``)
one after another in the same process, page by page, and adds ratios against
a baseline target; :func:`write` stores the rows with
:func:`halite.report.write_json_table` (``bench/results/web.json`` and
``web.md``).

CLI::

    python -m halite.webbench --target old=http://127.0.0.1:8001 \\
        --target cluster=http://127.0.0.1:8000 --duration 10 --concurrency 8 \\
        --car-ids-from 'http://127.0.0.1:8000/api/cars?per_page=50&sort=price_asc'
"""
from __future__ import annotations

import argparse
import http.client
import ssl
import json
import math
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Iterable, Mapping, Sequence

USER_AGENT = "halite-webbench/0.1"
DEFAULT_PAGES: dict[str, str] = {
    "catalogue": "/",
    "catalogue_used_price_asc": "/?condition=used&sort=price_asc",
    "car": "/cars/{id}",
}
LIMITS = {"concurrency": 256, "duration_s": 3600.0, "warmup_s": 600.0,
          "max_requests": 10_000_000, "timeout_s": 120.0}
COLUMNS = ["target", "page", "path", "concurrency", "duration_s", "requests", "errors",
           "non_2xx", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
           "rps_vs_baseline", "p50_vs_baseline", "p99_vs_baseline"]
ERROR_BACKOFF_S = 0.05  # after a transport error, so a dead target is not hammered


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def ssl_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The TLS context for https targets: ``ca_file`` alone is trusted (halite's CA for the
    site, :func:`halite.view.site_ca`), names and addresses checked; None: the system's CAs."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def _connection(split: urllib.parse.SplitResult, timeout_s: float,
                context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    """One connection to ``split``'s server: https with ``context``, else plain http."""
    if split.scheme == "https":
        return http.client.HTTPSConnection(split.hostname, split.port, timeout=timeout_s, context=context)
    return http.client.HTTPConnection(split.hostname, split.port, timeout=timeout_s)


def _check_url(url: str) -> urllib.parse.SplitResult:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if u.query or u.fragment:
        raise ValueError(f"a base URL has no query or fragment: {url!r}")
    return u


def _check_limits(concurrency: int, duration_s: float, warmup_s: float,
                  max_requests: int, timeout_s: float) -> None:
    for name, v, lo in (("concurrency", concurrency, 1), ("duration_s", duration_s, 0.01),
                        ("warmup_s", warmup_s, 0), ("max_requests", max_requests, 1),
                        ("timeout_s", timeout_s, 0.01)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool)) or math.isnan(v):
            raise ValueError(f"{name} must be a number, not {v!r}")
        if not lo <= v <= LIMITS[name]:
            raise ValueError(f"{name}={v} out of range [{lo}, {LIMITS[name]}]")


def _pages(paths: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    pages = dict(paths) if isinstance(paths, Mapping) else {p: p for p in paths}
    if not pages:
        raise ValueError("no path to benchmark")
    for name, p in pages.items():
        if not isinstance(p, str) or not p.startswith("/"):
            raise ValueError(f"page {name!r}: a path starts with '/': {p!r}")
    return pages


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


class _Budget:
    """A thread-safe request counter with a hard cap."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


class _Ids:
    """Round-robin over the car ids, shared by all workers."""

    def __init__(self, ids: Sequence[Any] | None):
        self.ids = [str(i) for i in ids] if ids else []
        self._i = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        if not self.ids:
            raise ValueError("a path has {id} but no car ids were given")
        with self._lock:
            v = self.ids[self._i % len(self.ids)]
            self._i += 1
        return v


class _Worker(threading.Thread):
    def __init__(self, split: urllib.parse.SplitResult, pages: list[tuple[str, str]],
                 offset: int, ids: _Ids, budget: _Budget, measure_from: float, end: float,
                 timeout_s: float, stop: threading.Event, context: ssl.SSLContext | None = None):
        super().__init__(daemon=True)
        self.context = context
        self.split, self.pages, self.offset, self.ids = split, pages, offset, ids
        self.budget, self.measure_from, self.end = budget, measure_from, end
        self.timeout_s, self.stop = timeout_s, stop
        self.prefix = split.path.rstrip("/")
        # per page: latencies (s) of answered requests, counters
        self.lat: dict[str, list[float]] = {n: [] for n, _ in pages}
        self.count = {n: {"requests": 0, "ok": 0, "non_2xx": 0, "errors": 0} for n, _ in pages}
        self.status: dict[str, dict[str, int]] = {n: {} for n, _ in pages}
        self.error_kinds: dict[str, dict[str, int]] = {n: {} for n, _ in pages}
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        return _connection(self.split, self.timeout_s, self.context)

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    def run(self) -> None:
        i = self.offset
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                if t0 >= self.end or not self.budget.take():
                    break
                name, path = self.pages[i % len(self.pages)]
                i += 1
                if "{id}" in path:
                    path = path.replace("{id}", urllib.parse.quote(self.ids.next(), safe=""))
                status, err = None, None
                try:
                    if self.conn is None:
                        self.conn = self._connect()
                    self.conn.request("GET", self.prefix + path,
                                      headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
                    resp = self.conn.getresponse()
                    resp.read()
                    status = resp.status
                    if resp.will_close:
                        self._close()
                except (OSError, http.client.HTTPException) as exc:
                    err = type(exc).__name__
                    self._close()
                t1 = time.monotonic()
                if t0 >= self.measure_from:
                    c = self.count[name]
                    c["requests"] += 1
                    if err is not None:
                        c["errors"] += 1
                        k = self.error_kinds[name]
                        k[err] = k.get(err, 0) + 1
                    else:
                        self.lat[name].append(t1 - t0)
                        s = self.status[name]
                        s[str(status)] = s.get(str(status), 0) + 1
                        if 200 <= status < 300:
                            c["ok"] += 1
                        else:
                            c["non_2xx"] += 1
                if err is not None:
                    self.stop.wait(min(ERROR_BACKOFF_S, max(0.0, self.end - time.monotonic())))
        finally:
            self._close()


def _window(split: urllib.parse.SplitResult, pages: dict[str, str], concurrency: int,
            warmup_s: float, duration_s: float, timeout_s: float, ids: _Ids,
            budget: _Budget, context: ssl.SSLContext | None = None) -> dict[str, dict[str, Any]]:
    """One measured window over ``pages`` (interleaved); returns stats per page."""
    start = time.monotonic()
    measure_from = start + warmup_s
    end = measure_from + duration_s
    stop = threading.Event()
    items = list(pages.items())
    workers = [_Worker(split, items, k, ids, budget, measure_from, end, timeout_s, stop, context)
               for k in range(concurrency)]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join(max(0.0, end - time.monotonic()) + timeout_s + 1.0)
    finally:
        stop.set()  # also on KeyboardInterrupt; workers are daemons anyway
    done = time.monotonic()
    window = max(1e-9, min(done, end) - measure_from) if done > measure_from else 1e-9
    out: dict[str, dict[str, Any]] = {}
    for name, path in items:
        lat = sorted(x for w in workers for x in w.lat[name])
        c = {k: sum(w.count[name][k] for w in workers) for k in workers[0].count[name]}
        status: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for w in workers:
            for k, v in w.status[name].items():
                status[k] = status.get(k, 0) + v
            for k, v in w.error_kinds[name].items():
                kinds[k] = kinds.get(k, 0) + v

        def ms(q: float) -> float | None:
            v = percentile(lat, q)
            return None if v is None else round(v * 1000, 3)

        out[name] = {
            "path": path, **c, "rps": round(c["ok"] / window, 2),
            "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "mean_ms": round(sum(lat) / len(lat) * 1000, 3) if lat else None,
            "window_s": round(window, 3), "status": dict(sorted(status.items())),
            "error_kinds": kinds, "alive_workers": sum(w.is_alive() for w in workers),
        }
    return out


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def run(base_url: str, paths: Mapping[str, str] | Sequence[str], concurrency: int = 8,
        duration_s: float = 10, warmup_s: float = 2, max_requests: int = 200_000,
        car_ids: Sequence[Any] | None = None, timeout_s: float = 5.0,
        mode: str = "each", ca_file: str | None = None) -> dict[str, dict[str, Any]]:
    """Benchmark ``paths`` (list, or dict name -> path) of ``base_url``.

    Returns ``{page: {"path", "requests", "ok", "non_2xx", "errors", "rps",
    "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "window_s", "status",
    "error_kinds", "concurrency", "duration_s"}}``; pages are keyed by name (by
    the path itself for a list).  ``mode="each"``: one window per page, in
    order (``max_requests`` shared equally); ``"mix"``: one window for all.
    Time bound: ``(warmup_s + duration_s) * windows + timeout_s`` roughly.
    ``ca_file``: the CA an https ``base_url`` is verified with (:func:`ssl_context`).
    """
    split = _check_url(base_url)
    context = ssl_context(ca_file)
    pages = _pages(paths)
    _check_limits(concurrency, duration_s, warmup_s, max_requests, timeout_s)
    if mode not in ("each", "mix"):
        raise ValueError(f"mode must be 'each' or 'mix', not {mode!r}")
    if any("{id}" in p for p in pages.values()) and not car_ids:
        raise ValueError("a path has {id} but no car ids were given")
    ids = _Ids(car_ids)
    result: dict[str, dict[str, Any]] = {}
    if mode == "mix":
        result = _window(split, pages, concurrency, warmup_s, duration_s, timeout_s, ids,
                         _Budget(max_requests), context)
    else:
        share = max(1, max_requests // len(pages))
        for name, path in pages.items():
            result.update(_window(split, {name: path}, concurrency, warmup_s, duration_s,
                                  timeout_s, ids, _Budget(share), context))
    for r in result.values():
        r["concurrency"] = concurrency
        r["duration_s"] = duration_s
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def preflight(base_url: str, timeout_s: float = 5.0, ca_file: str | None = None) -> int:
    """One GET of ``base_url`` + "/"; returns the status, raises if unreachable (or, over
    https, if the server's certificate does not verify with ``ca_file``)."""
    split = _check_url(base_url)
    conn = _connection(split, timeout_s, ssl_context(ca_file))
    try:
        conn.request("GET", split.path.rstrip("/") + "/", headers={"User-Agent": USER_AGENT})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException) as exc:
        raise RuntimeError(f"{base_url} is not reachable: {exc}") from exc
    finally:
        conn.close()


def compare(targets: Mapping[str, str], pages: Mapping[str, str] | Sequence[str] | None = None,
            car_ids: Sequence[Any] | None = None, concurrency: int = 8,
            duration_s: float = 10, warmup_s: float = 2, max_requests: int = 200_000,
            timeout_s: float = 5.0, baseline: str | None = None, check: bool = True,
            log=None, ca_file: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Benchmark every target, page by page (each page: target after target).

    ``baseline`` defaults to the target named ``old`` if any, else the first.
    Returns ``{"rows": [...], "ratios": [...]}``: one row per (target, page)
    with the :data:`COLUMNS` (``*_vs_baseline`` = this target ÷ the baseline
    on the same page, None for the baseline itself) plus ``ok``, ``mean_ms``,
    ``status``, ...; one ratio per (non-baseline target, page).
    ``max_requests`` caps each (target, page) window. ``ca_file``: the CA https
    targets are verified with.
    """
    if not targets:
        raise ValueError("no target")
    for name, url in targets.items():
        _check_url(url)
    pages = _pages(pages if pages is not None else DEFAULT_PAGES)
    _check_limits(concurrency, duration_s, warmup_s, max_requests, timeout_s)
    if baseline is None:
        baseline = "old" if "old" in targets else next(iter(targets))
    if baseline not in targets:
        raise ValueError(f"baseline {baseline!r} is not a target ({', '.join(targets)})")
    if check:
        for name, url in targets.items():
            preflight(url, timeout_s, ca_file)
    res: dict[tuple[str, str], dict[str, Any]] = {}
    for page, path in pages.items():
        for target, url in targets.items():
            if log:
                log(f"{target} {page} ({path}): {warmup_s}+{duration_s} s, "
                    f"{concurrency} connections")
            res[(target, page)] = run(url, {page: path}, concurrency, duration_s, warmup_s,
                                      max_requests, car_ids, timeout_s, ca_file=ca_file)[page]
    rows, ratios = [], []
    for target, url in targets.items():
        for page in pages:
            r = res[(target, page)]
            b = res[(baseline, page)]
            me = target != baseline
            rows.append({
                "target": target, "page": page, "base_url": url, **r,
                "rps_vs_baseline": _ratio(r["rps"], b["rps"]) if me else None,
                "p50_vs_baseline": _ratio(r["p50_ms"], b["p50_ms"]) if me else None,
                "p99_vs_baseline": _ratio(r["p99_ms"], b["p99_ms"]) if me else None,
                "baseline": baseline,
            })
            if me:
                ratios.append({"target": target, "baseline": baseline, "page": page,
                               "rps": rows[-1]["rps_vs_baseline"],
                               "p50_ms": rows[-1]["p50_vs_baseline"],
                               "p99_ms": rows[-1]["p99_vs_baseline"]})
    return {"rows": rows, "ratios": ratios}


def write(rows: list[dict[str, Any]], out_dir: str = "bench/results", name: str = "web",
          notes: str | None = None) -> dict[str, Any]:
    """``<out_dir>/<name>.json`` and ``<name>.md`` via report.write_json_table."""
    from .report import write_json_table

    if notes is None:
        base = next((r.get("baseline") for r in rows if r.get("baseline")), None)
        c = sorted({r.get("concurrency") for r in rows if r.get("concurrency") is not None})
        d = sorted({r.get("duration_s") for r in rows if r.get("duration_s") is not None})
        notes = ("rps = 2xx responses per second of the measured window; latencies "
                 "(nearest-rank percentiles, ms) over every answered request; errors = "
                 "transport failures (refused, reset, timeout); non_2xx = answered with "
                 "another status. "
                 + (f"Ratios are each target ÷ `{base}` on the same page (rps: above 1× "
                    "is better; latency: below 1× is better). " if base else "")
                 + f"{', '.join(map(str, c))} keep-alive connections, "
                   f"{', '.join(map(str, d))} s per target and page, after a warm-up; "
                   "the load generator runs on the same machine as the targets.")
    return write_json_table(name, rows, COLUMNS, out_dir=out_dir,
                            title="Web benchmark (halite-web, GET pages)", notes=notes)


def fetch_car_ids(url: str, limit: int = 50, timeout_s: float = 10.0,
                  seed: int | None = 42, ca_file: str | None = None) -> list[int]:
    """Car ids from a halite-web ``/api/cars`` URL (``{"cars": [{"id": ..}, ..]}``),
    at most ``limit`` of them (a seeded random sample when there are more)."""
    _check_url(urllib.parse.urlunsplit(urllib.parse.urlsplit(url)[:3] + ("", "")))
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                               "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s, context=ssl_context(ca_file)) as resp:
        data = json.load(resp)
    cars = data.get("cars") if isinstance(data, dict) else data
    ids = [int(c["id"]) for c in cars or [] if isinstance(c, dict) and "id" in c]
    if not ids:
        raise RuntimeError(f"no car id in {url}")
    if len(ids) > limit:
        ids = random.Random(seed).sample(ids, limit)
    return ids


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _target(s: str) -> tuple[str, str]:
    name, sep, url = s.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"expected NAME=URL, got {s!r}")
    try:
        _check_url(url)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return name, url.rstrip("/")


def _page(s: str) -> tuple[str, str]:
    name, sep, path = s.partition("=")
    if not sep or not name or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected NAME=/path, got {s!r}")
    return name, path


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m halite.webbench",
        description="Bounded HTTP benchmark of halite-web pages on one or more targets.")
    p.add_argument("--target", action="append", type=_target, required=True,
                   metavar="NAME=URL", help="e.g. old=http://127.0.0.1:8001 (repeatable)")
    p.add_argument("--baseline", help="target the others are compared with "
                                      "(default: 'old' if given, else the first)")
    p.add_argument("--page", action="append", type=_page, metavar="NAME=/path",
                   help="page to load (repeatable; {id} = a car id); default: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_PAGES.items()))
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per "
                                                                 "target and page (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    p.add_argument("--concurrency", type=int, default=8, help="connections (8)")
    p.add_argument("--max-requests", type=int, default=200_000,
                   help="cap per target and page, warm-up included (200000)")
    p.add_argument("--timeout", type=float, default=5.0, help="per request, seconds (5)")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--car-ids-from", metavar="URL",
                     help="halite-web /api/cars URL whose cars[].id feed {id}")
    ids.add_argument("--car-ids", help="comma-separated car ids for {id}")
    p.add_argument("--car-id-count", type=int, default=50, help="ids to rotate among (50)")
    p.add_argument("--ca", metavar="FILE", help="CA file https targets are verified with "
                                                "(the site: halite's CA, .halite/<topology>/ca.crt)")
    p.add_argument("--out", default="bench/results", help="directory (bench/results)")
    p.add_argument("--name", default="web", help="result file name (web)")
    p.add_argument("--no-write", action="store_true", help="print only")
    a = p.parse_args(list(argv) if argv is not None else None)

    targets = dict(a.target)
    if len(targets) != len(a.target):
        p.error("target names must be unique")
    pages = dict(a.page) if a.page else dict(DEFAULT_PAGES)
    car_ids: list[Any] | None = None
    try:
        if a.car_ids:
            car_ids = [x.strip() for x in a.car_ids.split(",") if x.strip()]
        elif a.car_ids_from:
            car_ids = fetch_car_ids(a.car_ids_from, a.car_id_count, a.timeout, ca_file=a.ca)
        if any("{id}" in v for v in pages.values()) and not car_ids:
            p.error("a page has {id}: give --car-ids-from URL or --car-ids")
        out = compare(targets, pages, car_ids, a.concurrency, a.duration, a.warmup,
                      a.max_requests, a.timeout, a.baseline,
                      log=lambda m: print(m, file=sys.stderr, flush=True), ca_file=a.ca)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"webbench: {exc}", file=sys.stderr)
        return 2
    from .report import _md  # the same table as the markdown file
    print(_md(COLUMNS, [[r[c] for c in COLUMNS] for r in out["rows"]]), end="")
    if not a.no_write:
        paths = write(out["rows"], a.out, a.name)
        print(f"wrote {paths['json']} and {paths['md']}", file=sys.stderr)
    bad = sum(r["errors"] + r["non_2xx"] for r in out["rows"])
    if bad:
        print(f"webbench: {bad} failed requests (errors + non-2xx)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
