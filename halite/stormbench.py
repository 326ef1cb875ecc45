"""``make bench-connections``: a storm of new clients through HAProxy, measured.

Issue 14 item 4: N clients connect at the same moment through HAProxy's write or read
port, as the site's users would (TLS verified against halite's CA, the site's login,
SCRAM), each holds its connection until every client has had its chance, runs
``SELECT 1`` and leaves. The clients run on the control machine in ``--procs`` processes
(asyncio and psycopg's async connections: libpq's own non-blocking connect, so each
client's TLS handshake and SCRAM proof really run at once with the others), started
together at one wall-clock instant.

Per (port, clients): how many connected, how many failed and with what (the first
distinct errors and their counts), the connect time's p50/p99/max (from the start
instant to a ready connection: the time a user would wait) and how many ``SELECT 1``
answered once every client had connected or failed (all of them hold their connections
until then). Written to ``bench/results/connections.json``
and ``connections.md``.

Why our own harness: pgbench reports only the mean connection time of its clients and
opens them one thread at a time; ``hey``/``wrk`` speak HTTP. What is timed here is the
connect of many PostgreSQL clients at once, which none of them measures.

Everything targets the lab's HAProxy only; every client has a connect timeout, every
process a deadline, and the clients leave by themselves.

CLI Example::

    python -m halite.stormbench                           # 1000 and 5000 clients, both ports
    python -m halite.stormbench --clients 1000 --ports read
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from typing import Sequence

from halite.webbench import percentile

#: How long a client may take to connect (libpq connect_timeout) before it counts as failed.
CONNECT_TIMEOUT = 60


def _raise_nofile(want: int) -> None:
    """Raise this process's open-file limit (soft) toward ``want``, within the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _clients(dsn: str, n: int, start_at: float, release_at: float, done=None, total: int = 0) -> list[tuple]:
    """``n`` clients connecting at ``start_at`` (epoch); each answer is
    ``(connect seconds or None, error or None, query ok)``. They keep their connections
    until ``done`` (a shared counter of clients that connected or failed, in every process)
    reaches ``total``, or until ``release_at``."""
    import psycopg

    release = asyncio.Event()

    def count() -> None:
        if done is not None:
            with done.get_lock():
                done.value += 1

    async def one() -> tuple:
        t0 = time.time()
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            count()
            return None, " ".join(str(exc).split())[:200], False
        took = time.time() - t0
        count()
        try:
            await release.wait()
            await (await conn.execute("SELECT 1")).fetchone()
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        finally:
            await conn.close()
        return took, None, ok

    async def releaser() -> None:
        while time.time() < release_at and (done is None or done.value < total):
            await asyncio.sleep(0.05)
        release.set()

    await asyncio.sleep(max(0.0, start_at - time.time()))
    rel = asyncio.create_task(releaser())
    out = await asyncio.gather(*(one() for _ in range(n)))
    await rel
    return out


def _proc(dsn: str, n: int, start_at: float, release_at: float, queue, done, total: int) -> None:
    _raise_nofile(n + 256)
    cpu = time.process_time()
    try:
        answers = asyncio.run(_clients(dsn, n, start_at, release_at, done, total))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, not lost
        answers = [(None, f"client process failed: {exc}", False)] * n
    queue.put((answers, time.process_time() - cpu))


def summarize(port: str, clients: int, answers: Sequence[tuple], wall_s: float, client_cpu_s: float = 0.0) -> dict:
    """One row of the result from the clients' answers (see :func:`_clients`) and the CPU
    seconds the client processes spent (TLS, SCRAM, asyncio: on a small machine the clients
    themselves may be what the storm waits for)."""
    times = sorted(t for t, err, _ in answers if t is not None)
    errors = Counter(err for t, err, _ in answers if err is not None)
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {
        "port": port, "clients": clients, "connected": len(times), "failed": sum(errors.values()),
        "connect_p50_ms": ms(statistics.median(times)) if times else None,
        "connect_p99_ms": ms(percentile(times, 99)), "connect_max_ms": ms(times[-1] if times else None),
        "queries_ok": sum(1 for _, _, ok in answers if ok),
        "wall_s": round(wall_s, 1),
        "client_cpu_ms_per_client": round(client_cpu_s * 1000 / clients, 1) if clients else None,
        "errors": dict(errors.most_common(3)),
    }


def storm(dsn: str, clients: int, procs: int = 4, port: str = "write") -> dict:
    """``clients`` clients at once against ``dsn`` from ``procs`` processes; one row."""
    procs = max(1, min(procs, clients))
    ctx = multiprocessing.get_context("spawn")  # no inherited sockets or threads
    queue = ctx.Queue()
    done = ctx.Value("i", 0)
    start_at = time.time() + 3.0  # every process is up and waiting by then
    release_at = start_at + CONNECT_TIMEOUT + 5
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_proc, args=(dsn, k, start_at, release_at, queue, done, clients), daemon=True) for k in shares]
    for w in workers:
        w.start()
    answers: list[tuple] = []
    cpu = 0.0
    deadline = release_at + 60
    try:
        for _ in workers:
            got, spent = queue.get(timeout=max(1.0, deadline - time.time()))
            answers.extend(got)
            cpu += spent
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()  # our own child, by its handle
    return summarize(port, clients, answers, time.time() - start_at, cpu)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m halite.stormbench", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1000,5000", help="comma-separated client counts (default 1000,5000)")
    p.add_argument("--ports", default="write,read", help="write, read or both (default write,read)")
    p.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--out", default="bench/results", help="where connections.json/.md go")
    args = p.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients takes whole numbers separated by commas, not {args.clients!r}")
    if any(c < 1 or c > 20000 for c in args.clients):
        p.error("--clients: each count from 1 to 20000")
    args.ports = args.ports.split(",")
    if any(x not in ("write", "read") for x in args.ports):
        p.error(f"--ports takes write and/or read, not {','.join(args.ports)!r}")
    if not 1 <= args.procs <= 32:
        p.error("--procs from 1 to 32")
    return args


COLUMNS = ["port", "clients", "connected", "failed", "connect_p50_ms", "connect_p99_ms", "connect_max_ms",
           "queries_ok", "wall_s", "client_cpu_ms_per_client"]


def main(argv: Sequence[str] | None = None) -> int:
    from halite import failover, report

    args = parse_args(argv)
    cluster = failover.Cluster()
    data = cluster.data
    rows = []
    for port in args.ports:
        dsn = cluster.write_dsn if port == "write" else cluster.read_dsn
        for n in args.clients:
            print(f"[storm {time.strftime('%H:%M:%S')}] {n} clients at once through the {port} port", flush=True)
            row = storm(dsn, n, args.procs, port)
            print(f"[storm {time.strftime('%H:%M:%S')}]   {row['connected']} connected, {row['failed']} failed"
                  f"{' ' + str(row['errors']) if row['errors'] else ''}; connect p50 {row['connect_p50_ms']} ms, "
                  f"p99 {row['connect_p99_ms']} ms, max {row['connect_max_ms']} ms", flush=True)
            rows.append(row)
    sizes = (f"pgbouncer.max_client_conn {data['pgbouncer']['max_client_conn']}, default_pool_size "
             f"{data['pgbouncer']['default_pool_size']}, haproxy.maxconn {data['haproxy']['maxconn']} per port")
    paths = report.write_json_table(
        "connections", rows, COLUMNS, out_dir=args.out, title="Connection storms through HAProxy",
        notes=(f"N clients connect at the same instant from the control machine ({args.procs} processes, "
               "asyncio), TLS verified and SCRAM as the site; each holds its connection until every client "
               "had its chance, then runs SELECT 1. Connect time = start instant to a ready connection; client CPU = what the client processes spent per client (TLS handshake, SCRAM proof, asyncio), on the same machine as the lab. "
               f"One run per row. Settings: {sizes}. Errors (first three kinds) are in the JSON."))
    print(open(paths["md"], encoding="utf-8").read(), end="")
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
