"""halite.backupbench without a lab: parsing, arithmetic, command lines, the table, and the
steps against stand-in hosts (commands recorded and answered; nothing runs inside a host)."""
from __future__ import annotations

import copy
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halite import backupbench as bb
from halite import config

REPO = Path(__file__).resolve().parents[2]
INFO_OK = REPO / "tests/unit/data/pgbackrest-2.45/info-ok.json"
INFO_NO_BACKUP = REPO / "tests/unit/data/pgbackrest-2.45/info-no-backup.json"
PASSWORD = "repl pässword $(not-a-command) 'q'"
DB_HOSTS = ["db-01", "db-02", "db-03"]
WHOLE = [{"name": "db-01", "role": "leader", "state": "running"},
         {"name": "db-02", "role": "sync_standby", "state": "streaming"},
         {"name": "db-03", "role": "replica", "state": "streaming"}]


# --------------------------------------------------------------------------
# stand-ins


class FakeHosts:
    """Records every command; answers with ``respond(host, argv, input)`` -> stdout, or raises what it returns."""

    def __init__(self, respond, clock=None, costs=None):
        self.respond, self.clock, self.costs = respond, clock, costs or {}
        self.writer = None
        self.calls: list[dict] = []
        self.started: list[dict] = []

    def run(self, host, argv, timeout=bb.SQL_TIMEOUT, env=None, input=None, check=True):  # noqa: A002
        argv = list(argv)
        self.calls.append({"host": host, "argv": argv, "env": dict(env or {}), "input": input, "timeout": timeout})
        line = " ".join(argv)
        for needle, seconds in self.costs.items():  # the time a command takes, on the fake clock
            if needle in line and self.clock is not None:
                self.clock.now += seconds
                break
        out = self.respond(host, argv, input)
        if isinstance(out, Exception):
            raise out
        return subprocess.CompletedProcess(argv, 0, out or "", "")

    def start(self, host, argv):
        self.started.append({"host": host, "argv": list(argv)})
        return self.writer

    def find(self, needle: str) -> list[int]:
        return [i for i, c in enumerate(self.calls) if needle in " ".join(c["argv"])]


class FakeProc:
    """A started writer: its output, already complete, and whether it was killed."""

    def __init__(self, lines, ended=True):
        self.stdout = io.StringIO("".join(f"{x}\n" for x in lines))
        self.ended, self.killed = ended, False

    def poll(self):
        return 0 if self.ended or self.killed else None

    def kill(self):
        self.killed = True

    def wait(self, timeout=None):
        return 0


def info_json(kind: str, label: str, start: int, repo_delta: int, size: int) -> str:
    """``pgbackrest info --output=json`` with one backup of ``kind``, as pgBackRest 2.45 writes it."""
    return json.dumps([{"name": "halite", "status": {"code": 0, "message": "ok"}, "backup": [
        {"label": "20261130-010000F", "type": "full", "timestamp": {"start": 10, "stop": 20},
         "info": {"size": 1, "delta": 1, "repository": {"size": 1, "delta": 1}}},
        {"label": label, "type": kind, "timestamp": {"start": start, "stop": start + 7},
         "info": {"size": size, "delta": size // 2, "repository": {"size": repo_delta * 3, "delta": repo_delta}}},
    ]}])


@pytest.fixture
def data():
    d = copy.deepcopy(config.load())
    d["users"]["replication"]["password"] = PASSWORD
    return d


def all_argv(hosts: FakeHosts) -> list[list[str]]:
    return [c["argv"] for c in hosts.calls] + [s["argv"] for s in hosts.started]


# --------------------------------------------------------------------------
# pgbackrest info -> sizes


def test_newest_backup_is_the_incremental_of_the_real_245_answer():
    info = json.loads(INFO_OK.read_text())
    newest = bb.newest_backup(info, "main")
    assert newest == {"label": "20261130-044719F_20261130-044723I", "type": "incr", "repo_bytes": 362976,
                      "repo_set_bytes": 4660384, "db_bytes": 23582559, "copied_bytes": 1851658,
                      "pgbackrest_seconds": 1}
    assert bb.newest_backup(info, "main", type="incr", since=1796014043)["repo_bytes"] == 362976


def test_newest_backup_refuses_what_is_not_the_backup_just_taken():
    info = json.loads(INFO_OK.read_text())
    with pytest.raises(ValueError, match="is incr, not the full backup"):
        bb.newest_backup(info, "main", type="full")
    with pytest.raises(ValueError, match="started before the one just taken"):
        bb.newest_backup(info, "main", since=1796014044)
    with pytest.raises(ValueError, match="stanza 'halite' is not in the answer"):
        bb.newest_backup(info, "halite")
    with pytest.raises(ValueError, match="has no backup"):
        bb.newest_backup(json.loads(INFO_NO_BACKUP.read_text()), json.loads(INFO_NO_BACKUP.read_text())[0]["name"])
    with pytest.raises(ValueError, match="list of stanzas"):
        bb.newest_backup({"name": "main"}, "main")


def test_du_pgbench_and_acks_are_read_from_their_output():
    assert bb.parse_du("1536000\t/var/tmp/halite-bench-basebackup\n") == 1536000
    with pytest.raises(ValueError):
        bb.parse_du("du: cannot access '/x': No such file or directory")
    assert bb.parse_pgbench("pgbench (15.10)\nnumber of transactions actually processed: 10010\n"
                            "latency average = 7.99 ms\ntps = 500.4871 (without initial connection time)\n") \
        == {"tps": 500.5, "transactions": 10010}
    assert bb.parse_pgbench("nothing") == {"tps": None, "transactions": None}
    assert bb.parse_acks(["pgid 77", "3|1000.4", "psql: error: connection refused", "2|1000.2", " 4|1000.6 "]) \
        == [bb.Ack(2, 1000.2), bb.Ack(3, 1000.4), bb.Ack(4, 1000.6)]


def test_archived_since_compares_segments_only():
    assert bb.archived_since("000000010000000000000007", "000000010000000000000007")
    assert bb.archived_since("000000020000000000000001", "000000010000000000000007")  # a later timeline
    assert not bb.archived_since("000000010000000000000006", "000000010000000000000007")
    assert not bb.archived_since("00000002.history", "000000010000000000000007")
    assert not bb.archived_since("000000010000000000000007.partial", "000000010000000000000007")
    assert not bb.archived_since("", "000000010000000000000007")
    assert not bb.archived_since(None, "000000010000000000000007")


# --------------------------------------------------------------------------
# ratios, medians, RPO arithmetic


def test_ratios_of_one_run():
    assert bb.ratio(10, 4) == 2.5
    assert bb.ratio(1, 3) == 0.333
    assert bb.ratio(1, 0) is None and bb.ratio(None, 2) is None
    assert bb.seconds_per_gb(30, 2 * 10**9) == 15.0
    assert bb.seconds_per_gb(30, None) is None
    entry = {"full": {"seconds": 30.0, "repo_bytes": 300}, "basebackup": {"seconds": 20.0, "bytes": 600},
             "incr": {"seconds": 5.0, "repo_bytes": 30}}
    assert bb.scale_ratios(entry) == {"full_vs_basebackup_time": 1.5, "full_vs_basebackup_size": 0.5,
                                      "incr_vs_full_size": 0.1}


def test_median_counts_the_runs_it_comes_from():
    assert bb.median_of([3.0, None, 1.0, 2.0]) == (2.0, 3)
    assert bb.median_of([]) == (None, 0)
    summary = bb.rpo_summary([{"seconds": 12.0, "rows_lost": 60}, {"seconds": 30.5, "rows_lost": 150},
                              {"seconds": 20.0, "rows_lost": 99}, {"seconds": None, "rows_lost": None}], 60)
    assert summary["median_seconds"] == 20.0 and summary["median_rows_lost"] == 99
    assert summary["median_of_runs"] == 3 and summary["archive_timeout"] == 60 and len(summary["runs"]) == 4


def test_rpo_counts_acknowledged_rows_above_the_restored_id_and_the_seconds_between():
    acks = [bb.Ack(i, 1000.0 + 0.2 * (i - 2)) for i in range(2, 12)]  # ids 2..11, the last at 1001.8
    res = bb.rpo_result(acks, restored_id=6, restored_t=1000.8)
    assert res["acked_writes"] == 10 and res["last_acked_id"] == 11
    assert res["rows_lost"] == 5  # 7, 8, 9, 10, 11
    assert res["seconds"] == pytest.approx(1.0)
    assert res["unacknowledged_restored"] == 0
    # only the baseline row came back: every acknowledged write is lost
    everything = bb.rpo_result(acks, restored_id=1, restored_t=990.0)
    assert everything["rows_lost"] == 10 and everything["seconds"] == pytest.approx(11.8)
    # a commit whose answer the cut swallowed is restored: nothing acknowledged lost, RPO 0
    beyond = bb.rpo_result(acks, restored_id=12, restored_t=1002.0)
    assert beyond["rows_lost"] == 0 and beyond["seconds"] == 0.0 and beyond["unacknowledged_restored"] == 1
    assert bb.rpo_result([], restored_id=1, restored_t=5.0)["rows_lost"] == 0


def test_cuts_spread_over_one_archive_timeout_cycle_within_the_writer_bound():
    assert bb.rpo_window(60) == (65.0, 105.0)
    assert bb.rpo_window(30) == (35.0, 65.0)
    assert bb.rpo_window(0) == (30.0, 60.0) and bb.rpo_window(300) == (30.0, 60.0)
    cuts = [bb.write_seconds(i, 3, 60) for i in range(3)]
    assert cuts == [71.7, 85.0, 98.3]
    assert bb.write_seconds(0, 1, 60) == 85.0
    assert bb.write_seconds(2, 3, 60, fixed=45) == 45.0
    for cut in cuts:
        loop = int(bb.writer_argv("/bin", "/run", 5432, cut)[3]) - 5
        assert cut + bb.WRITER_GRACE <= loop + 1 and loop <= bb.WRITER_MAX


def test_cluster_whole_needs_one_leader_and_every_replica_streaming():
    assert bb.cluster_whole(WHOLE, DB_HOSTS)
    assert bb.leader_of(WHOLE) == "db-01"
    starting = copy.deepcopy(WHOLE)
    starting[2]["state"] = "starting"
    assert not bb.cluster_whole(starting, DB_HOSTS)
    assert not bb.cluster_whole(WHOLE[:2], DB_HOSTS)
    two = copy.deepcopy(WHOLE)
    two[1]["role"] = "leader"
    two[1]["state"] = "running"
    assert not bb.cluster_whole(two, DB_HOSTS) and bb.leader_of(two) is None
    assert not bb.cluster_whole([], DB_HOSTS) and bb.leader_of([]) is None


# --------------------------------------------------------------------------
# arguments


def test_arguments_and_their_defaults():
    args = bb.parse_args([])
    assert args.scales == [10, 50, 100] and args.rpo_runs == 3 and args.out == "bench/results"
    assert args.rpo_write_seconds is None and not args.keep_database
    args = bb.parse_args(["--scales", "5, 20", "--rpo-runs", "0", "--out", "/tmp/x", "--rpo-write-seconds", "45"])
    assert args.scales == [5, 20] and args.rpo_runs == 0 and args.out == "/tmp/x" and args.rpo_write_seconds == 45
    assert bb.parse_args(["--scales", ""]).scales == []


@pytest.mark.parametrize("argv", [["--scales", "0"], ["--scales", "ten"], ["--scales", "-5"], ["--rpo-runs", "x"],
                                  ["--rpo-runs", "99"], ["--rpo-write-seconds", "200"],
                                  ["--rpo-write-seconds", "soon"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        bb.parse_args(argv)
    assert "error" in capsys.readouterr().err


# --------------------------------------------------------------------------
# command lines


def test_command_lines_as_the_brief_gives_them():
    assert bb.pgbackrest_argv("halite", "backup", ["--type=full"]) == \
        ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=halite", "--type=full", "backup"]
    assert bb.restore_argv("halite", "/etc/pgbackrest/drill.conf", "/var/lib/halite-drill/bench") == \
        ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=/etc/pgbackrest/drill.conf", "--stanza=halite",
         "--pg1-path=/var/lib/halite-drill/bench", "--type=immediate", "--archive-mode=off", "restore"]
    server = "host=10.77.1.11 port=5432 sslmode=verify-full sslrootcert=/etc/halite/tls/ca.crt"
    base = bb.basebackup_argv("/usr/lib/postgresql/15/bin", server, "replicator")
    assert base == ["/usr/lib/postgresql/15/bin/pg_basebackup", "-d", server, "-U", "replicator",
                    "-D", "/var/tmp/halite-bench-basebackup", "-Ft", "--compress=lz4", "-X", "fetch", "-c", "fast",
                    "--no-password"]
    assert bb.pgbench_init_argv("/b", "/run/pg", 5432, 50) == \
        ["runuser", "-u", "postgres", "--", "/b/pgbench", "-i", "-s", "50", "-q", "-h", "/run/pg", "-p", "5432",
         "halite_bench"]
    assert bb.pgbench_run_argv("/b", "/run/pg", 5432)[4:] == ["/b/pgbench", "-T", "20", "-c", "4", "-h", "/run/pg",
                                                              "-p", "5432", "halite_bench"]
    assert bb.psql_argv("/b", "/run/pg", 5432, "halite_bench", ["SELECT 1", "SELECT 2"]) == \
        ["runuser", "-u", "postgres", "--", "/b/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "/run/pg", "-p",
         "5432", "-d", "halite_bench", "-c", "SELECT 1", "-c", "SELECT 2"]
    assert bb.bounded(["du", "-sb", "/x"], 119.2) == ["timeout", "-k", "10", "120", "du", "-sb", "/x"]
    assert bb.shown(bb.pgbackrest_argv("halite", "backup", ["--type=full"])) == \
        "pgbackrest --stanza=halite --type=full backup"
    assert len(bb.shown(["sh", "-c", bb.KILL_SCRIPT, "sh", "/x" * 200])) == 160


def test_the_writer_is_bounded_and_runs_as_postgres_in_timeouts_process_group():
    argv = bb.writer_argv("/usr/lib/postgresql/15/bin", "/var/run/postgresql", 5432, 98.3)
    assert argv[:4] == ["timeout", "-k", "5", "119"]  # loop 114 s (cut + 15), then 5 s
    assert argv[4:9] == ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "bash"]
    assert argv[-6:] == ["114", "/usr/lib/postgresql/15/bin/psql", "/var/run/postgresql", "5432", "halite_bench",
                         "0.2"]
    assert int(bb.writer_argv("/b", "/s", 1, 105)[3]) <= bb.WRITER_MAX + 5


def test_the_writer_script_prints_its_group_and_acks_and_stops_by_itself(tmp_path):
    fake_psql = tmp_path / "psql"
    fake_psql.write_text("#!/bin/sh\n"
                         "n=$(cat \"$0.n\" 2>/dev/null || echo 1); n=$((n + 1)); echo $n > \"$0.n\"\n"
                         "case \"$*\" in *'INSERT INTO rpo DEFAULT VALUES RETURNING'*) echo \"$n|$(date +%s.%N)\";; "
                         "*) echo unexpected \"$*\" >&2; exit 2;; esac\n")
    fake_psql.chmod(0o755)
    began = time.monotonic()
    res = subprocess.run(["bash", "-c", bb.WRITER_SCRIPT, "w", "2", str(fake_psql), "/run/x", "5432",
                          "halite_bench", "0.1"], capture_output=True, text=True, timeout=20)
    assert time.monotonic() - began < 6  # 2 s of loop (whole seconds), then it stops by itself
    lines = res.stdout.splitlines()
    assert re.fullmatch(r"pgid \d+", lines[0]), res.stdout + res.stderr
    acks = bb.parse_acks(lines)
    assert len(acks) >= 3 and [a.id for a in acks] == list(range(2, 2 + len(acks)))
    assert res.stderr == ""


def test_the_kill_guard_kills_only_the_postmaster_of_that_data_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    other = subprocess.Popen(["sleep", "30"])
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-D", str(data)])
    try:
        (data / "postmaster.pid").write_text(f"{other.pid}\n{data}\n")
        subprocess.run(["sh", "-c", bb.KILL_SCRIPT, "sh", str(data)], timeout=10)
        assert other.poll() is None  # a stale file's PID is left alone
        (data / "postmaster.pid").write_text(f"{ours.pid}\n{data}\n")
        subprocess.run(["sh", "-c", bb.KILL_SCRIPT, "sh", str(data)], timeout=10)
        assert ours.wait(timeout=10) == -signal.SIGKILL
        (data / "postmaster.pid").unlink()
        assert subprocess.run(["sh", "-c", bb.KILL_SCRIPT, "sh", str(data)], timeout=10).returncode == 0
    finally:
        for proc in (other, ours):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def test_scratch_server_configuration_keeps_it_to_itself():
    text = ("pg_control version number:            1300\n"
            "max_connections setting:              120\n"
            "max_worker_processes setting:         8\n"
            "max_wal_senders setting:              10\n"
            "max_prepared_xacts setting:           0\n"
            "max_locks_per_xact setting:           64\n")
    minimums = bb.controldata_minimums(text)
    assert minimums == {"max_connections": 120, "max_worker_processes": 8, "max_wal_senders": 10,
                        "max_prepared_transactions": 0, "max_locks_per_transaction": 64}
    home = "/var/lib/halite-drill/bench-rpo"
    settings = bb.scratch_settings(home, 5499, minimums)
    conf = bb.conf_text(settings)
    for line in ("listen_addresses = ''", "port = '5499'", f"unix_socket_directories = '{home}'",
                 "archive_mode = 'off'", "max_connections = '120'", "max_locks_per_transaction = '64'"):
        assert line in conf.splitlines()
    options = bb.scratch_options(f"{home}/bench.conf", settings)
    assert options.startswith(f"-c config_file={home}/bench.conf -c listen_addresses= -c port=5499 ")
    assert f"-c unix_socket_directories={home}" in options and "-c archive_mode=off" in options
    with pytest.raises(ValueError, match="spaces or quotes"):
        bb.scratch_options("/a b/bench.conf", settings)
    assert bb.conf_text({"x": "it's"}).splitlines()[-1] == "x = 'it''s'"


# --------------------------------------------------------------------------
# the steps, against stand-in hosts


def scale_answers(state: dict, clock):
    def respond(host, argv, input):
        line = " ".join(argv)
        if "pg_current_wal_lsn" in line:
            return "0/5000000"
        if "pg_last_wal_replay_lsn" in line:
            return "t"
        if "pg_database_size" in line:
            return "160000000|200000000"
        if "pgbackrest" in line and line.endswith(" backup"):
            state["kind"] = "full" if "--type=full" in line else "incr"
            return ""
        if "pgbackrest" in line and " info" in line:
            started = int(clock.now) - 1  # pgBackRest's own clock, a moment after the command began
            if state["kind"] == "full":
                return info_json("full", "20261201-100000F", started, 60_000_000, 200_000_000)
            return info_json("incr", "20261201-100000F_20261201-100200I", started, 3_000_000, 201_000_000)
        if "pg_basebackup" in line and state.get("fail_basebackup"):
            return RuntimeError("db-02: pg_basebackup exited 1: connection refused")
        if line.startswith("du -sb /var/tmp/halite-bench-basebackup"):
            return "40000000\t/var/tmp/halite-bench-basebackup"
        if line.startswith("du -sb /var/lib/halite-drill/bench"):
            return "210000000\t/var/lib/halite-drill/bench"
        if "-T 20" in line:
            return "number of transactions actually processed: 10010\ntps = 500.46 (without initial connection time)\n"
        return ""
    return respond


def test_one_scale_runs_every_step_in_order_and_measures_the_same_run(data, clock):
    hosts = FakeHosts(scale_answers({}, clock), clock, costs={"--type=full backup": 30, "pg_basebackup": 20,
                                                      "--type=incr backup": 4, " restore": 10})
    said: list[str] = []
    b = bb.Bench(data, hosts=hosts, members=lambda: WHOLE, clock=clock, say=said.append)
    entry = bb.measure_scale(b, 10)

    assert entry["scale"] == 10 and entry["db_bytes"] == 160_000_000 and entry["cluster_bytes"] == 200_000_000
    assert entry["full"]["seconds"] == 30 and entry["full"]["repo_bytes"] == 60_000_000
    assert entry["full"]["label"] == "20261201-100000F"
    assert entry["basebackup"] == {"seconds": 20, "bytes": 40_000_000, "host": "db-02", "from": "db-01"}
    assert entry["writes"]["tps"] == 500.5
    assert entry["incr"]["seconds"] == 4 and entry["incr"]["repo_bytes"] == 3_000_000
    assert entry["restore"] == {"seconds": 10, "bytes": 210_000_000, "seconds_per_gb": 47.619,
                                "set": "20261201-100000F_20261201-100200I"}
    assert entry["ratios"] == {"full_vs_basebackup_time": 1.5, "full_vs_basebackup_size": 1.5,
                               "incr_vs_full_size": 0.05}

    # the order of the brief, on the hosts it names
    order = [hosts.find(n)[0] for n in ("DROP DATABASE IF EXISTS halite_bench", "pgbench -i -s 10",
                                        "--type=full backup", "pg_basebackup", "-T 20", "--type=incr backup",
                                        " restore")]
    assert order == sorted(order)
    by = {n: hosts.calls[hosts.find(n)[0]]["host"] for n in ("pgbench -i", "--type=full", "pg_basebackup", "-T 20",
                                                             " restore")}
    assert by == {"pgbench -i": "db-01", "--type=full": "backup-01", "pg_basebackup": "db-02", "-T 20": "db-01",
                  " restore": "backup-01"}
    # both copies are removed after being measured
    assert max(hosts.find("rm -rf --one-file-system /var/tmp/halite-bench-basebackup")) > hosts.find("pg_basebackup")[0]
    assert max(hosts.find("rm -rf --one-file-system /var/lib/halite-drill/bench")) > hosts.find(" restore")[0]
    assert any("scale 10: pgBackRest full 20261201-100000F in 30.0 s" in s for s in said)


def test_the_replication_password_is_only_in_pg_basebackups_environment(data, clock):
    hosts = FakeHosts(scale_answers({}, clock), clock)
    b = bb.Bench(data, hosts=hosts, members=lambda: WHOLE, clock=clock, say=lambda s: None)
    bb.measure_scale(b, 10)
    for argv in all_argv(hosts):
        assert not any(PASSWORD in arg or "PGPASSWORD" in arg for arg in argv), argv
    with_env = [c for c in hosts.calls if c["env"]]
    assert [c["argv"][0].rsplit("/", 1)[-1] for c in with_env] == ["pg_basebackup"]
    assert with_env[0]["env"] == {"PGPASSWORD": PASSWORD}
    # and the site's database is never named
    site = data["users"]["app"]["database"]
    assert not any(site in arg for argv in all_argv(hosts) for arg in argv)


def test_a_failed_basebackup_still_removes_its_folder(data, clock):
    hosts = FakeHosts(scale_answers({"fail_basebackup": True}, clock), clock)
    b = bb.Bench(data, hosts=hosts, members=lambda: WHOLE, clock=clock, say=lambda s: None)
    with pytest.raises(RuntimeError, match="connection refused"):
        bb.basebackup(b, "db-01")
    assert hosts.find("rm -rf --one-file-system /var/tmp/halite-bench-basebackup")[-1] > hosts.find("pg_basebackup")[0]


def test_the_bench_refuses_to_run_where_its_database_is_the_sites(data):
    data["users"]["app"]["database"] = bb.BENCH_DB
    with pytest.raises(RuntimeError, match="would replace it"):
        bb.Bench(data, hosts=FakeHosts(lambda *a: ""))


def rpo_answers(state: dict):
    def respond(host, argv, input):
        line = " ".join(argv)
        if "INSERT INTO rpo DEFAULT VALUES RETURNING" in line:
            return "1|1000.000000"
        if "pg_switch_wal" in line:
            return "000000010000000000000007"
        if "pg_stat_archiver" in line:
            state["archiver_looks"] = state.get("archiver_looks", 0) + 1
            return "000000010000000000000006|" if state["archiver_looks"] < 3 else "000000010000000000000007|"
        if " restore" in line and "pgbackrest" in line and state.get("fail_restore"):
            return RuntimeError("backup-01: pgbackrest restore exited 56: unable to decrypt")
        if "pg_controldata" in line:
            return "max_connections setting:              100\nmax_worker_processes setting:         8\n"
        if "pg_is_in_recovery" in line:
            state["recovery_looks"] = state.get("recovery_looks", 0) + 1
            return "t" if state["recovery_looks"] < 2 else "f"
        if "SELECT max(id)" in line:
            return "6|1001.800000|6"
        return ""
    return respond


def rpo_bench(data, clock, state, writer_lines, ended=True):
    hosts = FakeHosts(rpo_answers(state), clock)
    hosts.writer = FakeProc(writer_lines, ended=ended)
    power = []
    b = bb.Bench(data, hosts=hosts, members=lambda: WHOLE, clock=clock, say=lambda s: None,
                 power_off=lambda h: power.append(("off", tuple(h))),
                 power_on=lambda h: power.append(("on", tuple(h))))
    return b, hosts, power


WRITER_LINES = ["pgid 4242", *[f"{i}|{1001.0 + 0.2 * (i - 2):.6f}" for i in range(2, 12)],
                "psql: error: connection to server on socket failed"]


def test_an_rpo_run_cuts_restores_reads_and_powers_the_cluster_back_on(data, clock):
    b, hosts, power = rpo_bench(data, clock, {}, WRITER_LINES)
    run = bb.rpo_run(b, 0, 3)

    assert power == [("off", tuple(DB_HOSTS)), ("on", tuple(DB_HOSTS))]
    assert run["planned_write_seconds"] == 71.7 and run["write_seconds"] == 71.7
    assert run["acked_writes"] == 10 and run["last_acked_id"] == 11
    assert run["restored_id"] == 6 and run["rows_lost"] == 5
    assert run["seconds"] == pytest.approx(1.0)  # id 11 at 1002.8, id 6 at 1001.8
    assert run["baseline_segment"] == "000000010000000000000007"
    assert run["last_acked_at"].endswith("+00:00") and run["restored_rows"] == 6
    # the writer ran on the leader
    assert hosts.started[0]["host"] == "db-01" and hosts.started[0]["argv"][0] == "timeout"
    # the latest state, restored with the drill's file, archiving nothing, into the bench's scratch folder
    restore = hosts.calls[hosts.find("pgbackrest --config=/etc/pgbackrest/drill.conf")[0]]
    assert restore["host"] == "backup-01"
    assert "--type=default" in restore["argv"] and "--archive-mode=off" in restore["argv"]
    assert "--pg1-path=/var/lib/halite-drill/bench-rpo/data" in restore["argv"]
    # its own configuration, then started alone, then stopped by pg_ctl and its PID, then removed
    conf = next(c for c in hosts.calls if c["argv"][-1].endswith("/bench.conf"))
    assert "listen_addresses = ''" in conf["input"] and "max_connections = '100'" in conf["input"]
    start = hosts.calls[hosts.find(" start")[-1]]
    assert "-c listen_addresses= -c port=5499" in " ".join(start["argv"])
    stops = hosts.find("-m immediate -w -t 60 stop")
    read = hosts.find("SELECT max(id)")[0]
    assert stops[-1] > read and hosts.find("kill -KILL")[-1] > read
    assert hosts.find("rm -rf --one-file-system /var/lib/halite-drill/bench-rpo")[-1] > stops[-1]
    assert not any(PASSWORD in arg for argv in all_argv(hosts) for arg in argv)


def test_a_failed_restore_still_stops_the_copy_and_powers_the_cluster_on(data, clock):
    b, hosts, power = rpo_bench(data, clock, {"fail_restore": True}, WRITER_LINES)
    with pytest.raises(RuntimeError, match="unable to decrypt"):
        bb.rpo_run(b, 0, 1)
    assert power == [("off", tuple(DB_HOSTS)), ("on", tuple(DB_HOSTS))]
    restore = hosts.find("pgbackrest --config=/etc/pgbackrest/drill.conf")[0]
    assert hosts.find("-m immediate -w -t 60 stop")[-1] > restore
    assert hosts.find("rm -rf --one-file-system /var/lib/halite-drill/bench-rpo")[-1] > restore


def test_a_writer_that_never_commits_is_stopped_by_its_group_and_nothing_loses_power(data, clock, monkeypatch):
    monkeypatch.setattr(bb, "FIRST_ACK_TIMEOUT", 0.2)
    b, hosts, power = rpo_bench(data, clock, {}, ["pgid 4242", "psql: error: FATAL: the database system is "
                                                               "shutting down"], ended=False)
    with pytest.raises(RuntimeError, match="acknowledged no commit"):
        bb.rpo_run(b, 0, 1)
    assert power == []
    assert hosts.writer.killed
    kill = hosts.calls[hosts.find("kill -TERM -- -4242")[0]]
    assert kill["host"] == "db-01"


# --------------------------------------------------------------------------
# results


def results_example(data) -> dict:
    results = bb.new_results(data)
    entry = {"scale": 10, "leader": "db-01", "db_bytes": 160_000_000, "cluster_bytes": 1_500_000_000,
             "load_seconds": 12.0,
             "full": {"seconds": 30.0, "repo_bytes": 60_000_000, "label": "F"},
             "basebackup": {"seconds": 20.0, "bytes": 40_000_000, "host": "db-02", "from": "db-01"},
             "writes": {"seconds": 20, "clients": 4, "tps": 512.3, "transactions": 10246},
             "incr": {"seconds": 4.0, "repo_bytes": 3_000_000, "label": "I"},
             "restore": {"seconds": 10.0, "bytes": 210_000_000, "seconds_per_gb": 47.619, "set": "I"}}
    entry["ratios"] = bb.scale_ratios(entry)
    results["scales"].append(entry)
    runs = [{"run": 1, "write_seconds": 71.7, "acked_writes": 340, "last_acked_t": 1764583200.25,
             "restored_t": 1764583188.0, "rows_lost": 60, "seconds": 12.25, "restore_seconds": 8.0,
             "recovery_seconds": 2.5, "heal_seconds": 41.0},
            {"run": 2, "write_seconds": 85.0, "acked_writes": 400, "last_acked_t": 1764583300.0,
             "restored_t": 1764583275.0, "rows_lost": 125, "seconds": 25.0, "restore_seconds": 8.5,
             "recovery_seconds": 3.0, "heal_seconds": 39.0}]
    results["rpo"] = bb.rpo_summary(runs, data["backup"]["archive_timeout"])
    return results


def test_the_table_reads_as_a_dba_expects(data):
    md = bb.markdown(results_example(data))
    assert "# Backups, restores and RPO" in md
    assert "| pgbench scale | halite_bench size | whole cluster | pgBackRest full |" in md
    assert "| 10 | 160.00 MB | 1.50 GB | 30.0 s | 60.00 MB | 20.0 s | 40.00 MB | 1.50× | 1.50× |" in md
    assert "| 10 | 512 | 4.0 s | 3.00 MB | 0.05× | 10.0 s | 210.00 MB | 47.62 |" in md
    assert "archive_timeout 60 s" in md
    assert "| 1 | 71.7 s | 340 | 10:00:00.250 | 09:59:48.000 | 60 | 12.2 s | 10.5 s | 41.0 s |" in md
    assert "Median of 2 runs: RPO 18.6 s, 92.5 acknowledged rows lost." in md
    assert "1 GB = 10^9 bytes" in md


def test_results_are_written_as_json_and_markdown_in_the_schema(data, tmp_path):
    paths = bb.write_results(results_example(data), tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    assert set(saved) >= {"when", "machine", "scales", "rpo"}
    assert saved["machine"]["cores"] == os.cpu_count()
    scale = saved["scales"][0]
    assert set(scale) >= {"scale", "db_bytes", "full", "basebackup", "incr", "restore", "ratios"}
    assert set(scale["full"]) >= {"seconds", "repo_bytes"} and set(scale["basebackup"]) >= {"seconds", "bytes"}
    assert set(scale["restore"]) >= {"seconds", "bytes", "seconds_per_gb"}
    assert saved["rpo"]["median_seconds"] == 18.625 and saved["rpo"]["median_rows_lost"] == 92.5
    assert saved["rpo"]["median_of_runs"] == 2 and saved["rpo"]["archive_timeout"] == 60
    assert paths["md"].read_text().startswith("# Backups, restores and RPO")
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_a_run_without_results_says_what_it_would_have_measured_on(data):
    md = bb.markdown(bb.new_results(data))
    assert md.startswith("# Backups, restores and RPO") and "Measured" in md and "stanza `halite`" in md
    assert "##" not in md


def test_make_bench_backup_deploys_then_runs_the_module():
    makefile = (REPO / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    assert "bench-backup" in phony.split()
    recipe = makefile.split("\nbench-backup:", 1)[1].split("\n\n", 1)[0]
    steps = [line.strip() for line in recipe.splitlines()[1:]]
    assert steps == ["$(HALITE) lab up", "$(HALITE) orch deploy", "$(PY) -m halite.backupbench --rpo-runs $(RUNS)"]
