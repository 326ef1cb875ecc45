"""``halite``: the configuration, the lab and the benchmarks from the command line.

Examples::

    halite config check      # every problem of the topology and settings; exit 1 if any
    halite config check --topology site.yaml --settings site-settings.yaml
    halite config show db-01 # what db-01 receives (its pillar), secrets masked
    halite config example    # every setting with its default (pillar.example)

    halite hosts trust       # first contact: the hosts' key fingerprints, through the jump host
    halite lab up            # build (cached) and boot the five lab hosts
    halite lab status        # host, release, running or not, addresses, roles
    halite lab ssh db-01 -- patronictl list
    halite lab fault postgres-kill db-01   # fault primitives (see halite.faults)
    halite lab down          # remove everything the lab made
    halite cluster --watch   # the Patroni cluster's table every 2 s until Ctrl-C (--watch 5: every 5 s)
    halite orch deploy       # an orchestration (salt/orch/deploy.sls), each step shown live
    halite orch etcd_member --pillar '{"target": "db-04"}'
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from halite import config, lab


def _lab(args: argparse.Namespace) -> int:
    if args.action == "up":
        lab.up(args.hosts or None)
        print(lab.format_table(lab.status(), ["host", "release", "state", "edge", "private", "roles"]))
    elif args.action == "down":
        lab.down()
    elif args.action == "status":
        rows = lab.status()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(lab.format_table(rows, ["host", "release", "state", "pid", "edge", "private", "roles"]))
    elif args.action == "ssh":
        if not args.hosts:
            print("usage: halite lab ssh HOST [CMD...]", file=sys.stderr)
            return 2
        host, *cmd = args.hosts
        topo = config.load()["topology"]
        argv = lab.ssh_base(topo, host) + (["-t"] if not cmd and sys.stdin.isatty() else []) + lab.as_root(topo, host, cmd)
        os.execvp(argv[0], argv)
    elif args.action == "url":
        print(lab.site_url())
    elif args.action == "fault":
        from halite import faults

        if len(args.hosts) < 2 or args.hosts[0] not in faults.ACTIONS:
            print(f"usage: halite lab fault {{{'|'.join(faults.ACTIONS)}}} HOST [--peers H1,H2] [--what patroni|postgres|pgbouncer|host]",
                  file=sys.stderr)
            return 2
        action, host, *rest = args.hosts
        kwargs = {}
        while rest:
            flag = rest.pop(0)
            if flag == "--peers" and rest:
                kwargs["peers"] = rest.pop(0).split(",")
            elif flag == "--what" and rest:
                kwargs["what"] = rest.pop(0)
            else:
                print(f"halite lab fault: unknown option {flag}", file=sys.stderr)
                return 2
        print(faults.ACTIONS[action](host, **kwargs))
    return 0


def _config(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from halite import example

    if args.action == "example":
        sys.stdout.write(example.render())
        return 0
    topo = Path(args.topology) if args.topology else None
    settings = [Path(p) for p in args.settings] if args.settings is not None else None
    if args.action == "check":
        problems = config.check(topo, settings)
        try:
            topo_data = config.read_yaml(topo or config.topology_path())
        except config.ConfigError:
            topo_data = {}
        files = [os.path.relpath(p) for p in [topo or config.topology_path(), *(settings or config.settings_paths(topo_data))]]
        if problems:
            print(f"halite: {len(problems)} problem(s) in {', '.join(files)}:", file=sys.stderr)
            for key, msg in problems:
                print(f"  {key}: {msg}", file=sys.stderr)
            return 1
        data = config.load(topology_file=topo, settings_files=settings)
        print(f"halite: configuration OK ({len(data['topology']['hosts'])} hosts; {', '.join(files)})")
        return 0
    if not args.host:
        print("usage: halite config show HOST", file=sys.stderr)
        return 2
    data = config.load(topology_file=topo, settings_files=settings)
    sys.stdout.write(yaml.safe_dump(config.show(args.host, data), sort_keys=False, allow_unicode=True))
    return 0


def _seconds(text: str) -> float:
    """argparse type of ``--watch SECONDS`` and ``--interval``: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the seconds between refreshes must be more than 0")
    return value


def _count(text: str) -> int:
    """argparse type of ``--count``: a whole number, 0 or more (0: no limit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of tables must be 0 (no limit) or more")
    return value


def _watch_every(args: argparse.Namespace) -> float | None:
    """Seconds between two tables of ``halite cluster``, or None for one table.

    ``--watch SECONDS`` says it; a bare ``--watch`` (or ``-W``) takes ``--interval``, else 2.
    """
    if args.watch is None or args.watch is False:
        return None
    if args.watch is True:
        return args.interval if args.interval is not None else 2.0
    return float(args.watch)


def _cluster(args: argparse.Namespace) -> int:
    from halite import failover

    if _watch_every(args) is None and (args.interval is not None or args.count):
        print("halite cluster: --interval and --count go with --watch", file=sys.stderr)
        return 2
    try:
        return _cluster_tables(args, failover.Cluster())
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends
        return 0


def _cluster_tables(args: argparse.Namespace, cluster, sleep=None) -> int:
    """Print the cluster's table once, or with ``--watch`` every few seconds until Ctrl-C or ``--count`` tables.

    A watch clears the screen before each table when stdout is a terminal, else it
    leaves a blank line between two; either way a timestamp line heads each table.
    A cluster that does not answer is one line in the watch (the next refresh asks
    again); without ``--watch`` it is an error (RuntimeError, exit 1 in ``main``).
    ``sleep`` waits between two tables (default time.sleep).
    """
    sleep = sleep or time.sleep
    every = _watch_every(args)
    shown = 0
    while True:
        try:
            members = cluster.members()
            rows = [{"member": m.get("name"), "host": m.get("host"), "role": m.get("role"), "state": m.get("state"),
                     "timeline": m.get("timeline", ""),
                     "lag": "" if m.get("role") in ("leader", "primary") else m.get("lag", "")} for m in members]
            table = lab.format_table(rows, ["member", "host", "role", "state", "timeline", "lag"])
        except Exception as exc:  # noqa: BLE001 - a watch outlives a cluster that does not answer
            if every is None:
                raise
            reason = " ".join(str(exc).split()) or type(exc).__name__
            table = f"no answer from the cluster: {reason}"
        if every is not None:
            if sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # clear the screen, like patronictl list -W
            elif shown:
                print()
            print(time.strftime("%Y-%m-%d %H:%M:%S"), f"(every {every:g} s; Ctrl-C ends)")
        print(table, flush=True)
        shown += 1
        if every is None or (args.count and shown >= args.count):
            return 0
        sleep(every)


def _orch(args: argparse.Namespace) -> int:
    from halite import orchestrate

    try:
        pillar = json.loads(args.pillar) if args.pillar else None
    except json.JSONDecodeError as exc:
        print(f"halite orch: --pillar is not JSON: {exc}", file=sys.stderr)
        return 2
    if pillar is not None and not isinstance(pillar, dict):
        print("halite orch: --pillar must be a JSON object", file=sys.stderr)
        return 2
    name = args.name if args.name.startswith("orch.") else f"orch.{args.name}"
    # etc/salt/master's paths (root_dir, file_roots, the roster) are relative
    # to the repository root, as for salt-run through the Saltfile
    os.chdir(orchestrate.REPO)
    try:
        return orchestrate.orchestrate(name, pillar=pillar, test=args.test)
    except KeyboardInterrupt:
        print(f"halite orch {name}: interrupted; the step that was running may have been cut short", file=sys.stderr)
        return 130


def _hosts(args: argparse.Namespace) -> int:
    from halite import hosts

    hosts.trust(confirm=(lambda _question: True) if args.yes else None)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import signal

    from halite import failover

    # SIGTERM ends the bench like Ctrl-C: the running fault is undone and the
    # pillar's timing profile put back (finally blocks in halite.failover).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    scenarios = failover.SCENARIOS if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [s for s in scenarios if s not in failover.SCENARIOS]
    if unknown:
        print(f"halite bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(failover.SCENARIOS)}",
              file=sys.stderr)
        return 2
    profiles = args.profiles.split(",")
    known = config.load()["patroni"]["profiles"]
    if [p for p in profiles if p not in known]:
        print(f"halite bench: unknown profile in {args.profiles}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if args.runs < 1 or args.runs > 50:
        print("halite bench: --runs must be between 1 and 50", file=sys.stderr)
        return 2
    failover.bench(scenarios, profiles, args.runs, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="halite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_lab = sub.add_parser("lab", help="the lab of systemd-nspawn hosts")
    p_lab.add_argument("action", choices=["up", "down", "status", "ssh", "url", "fault"])
    p_lab.add_argument("hosts", nargs=argparse.REMAINDER, help="hosts (up), or HOST [CMD...] (ssh)")
    p_lab.add_argument("--json", action="store_true", help="status as JSON")
    p_lab.set_defaults(func=_lab)
    p_config = sub.add_parser("config", help="check the topology and settings; show a host's view")
    p_config.add_argument("action", choices=["check", "show", "example"])
    p_config.add_argument("host", nargs="?", help="show: the host (or control)")
    p_config.add_argument("--topology", help="a topology file (default pillar/topology.yaml or HALITE_TOPOLOGY)")
    p_config.add_argument("--settings", nargs="*", help="settings files, merged in order (default: pillar's)")
    p_config.set_defaults(func=_config)
    p_cluster = sub.add_parser("cluster", help="the lab's Patroni cluster: member, host, role, state, timeline, lag")
    p_cluster.add_argument("-W", "--watch", nargs="?", const=True, type=_seconds, metavar="SECONDS",
                           help="refresh the table every SECONDS (default 2) until Ctrl-C, like patronictl list -W")
    p_cluster.add_argument("--interval", type=_seconds, metavar="SECONDS",
                           help="seconds between refreshes of a bare --watch (the same as --watch SECONDS)")
    p_cluster.add_argument("--count", type=_count, default=0, metavar="N",
                           help="stop after N tables (--watch; 0: never)")
    p_cluster.set_defaults(func=_cluster)
    p_orch = sub.add_parser("orch", help="run an orchestration (salt/orch/NAME.sls), showing each step as it starts and ends")
    p_orch.add_argument("name", help="deploy, migrate, site, rolling_restart, etcd_member (or orch.NAME)")
    p_orch.add_argument("--pillar", help='pillar override as JSON, e.g. \'{"target": "db-04"}\'')
    p_orch.add_argument("--test", action="store_true", help="dry run (test=True)")
    p_orch.set_defaults(func=_orch)
    p_hosts = sub.add_parser("hosts", help="first contact: record the hosts' keys, scanned through the jump host")
    p_hosts.add_argument("action", choices=["trust"])
    p_hosts.add_argument("--yes", action="store_true", help="record without asking (compare the fingerprints first)")
    p_hosts.set_defaults(func=_hosts)
    p_bench = sub.add_parser("bench", help="benchmarks against the lab (results under bench/results)")
    p_bench.add_argument("name", choices=["failover"])
    p_bench.add_argument("--runs", type=int, default=1)
    p_bench.add_argument("--scenarios", default="all", help="comma-separated, or all")
    p_bench.add_argument("--profiles", default="halite,patroni-defaults")
    p_bench.add_argument("--out", default="bench/results")
    p_bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as exc:
        print(f"halite: configuration error ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for key, msg in exc.problems:
            print(f"  {key}: {msg}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"halite: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
