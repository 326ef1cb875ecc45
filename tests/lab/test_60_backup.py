"""Backups and point-in-time recovery in the lab (pgBackRest on backup-01):
the stanza and a first backup from orch.deploy, a backup now from a standby,
a restore drill that leaves the cluster alone, refusals of unreachable
targets that change nothing, an operator's DROP TABLE undone by orch.restore
to a restore point while the site is browsed, a damaged backup caught by the
drill, and a member powered off during a backup leaving the repository
usable. Runs after the failover suite: the restore puts the cluster on a new
timeline."""
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from halite import config, faults, formats, lab as labmod, view
from labkit import BIN, healthy_cluster, patroni_members, run, salt_ssh, wait_for

pytestmark = pytest.mark.lab
DATA = config.load()
TOPO = DATA["topology"]
DB_HOSTS = config.hosts_with_role(TOPO, "db")
BACKUP = config.hosts_with_role(TOPO, "backup")[0]
STANZA = DATA["backup"]["stanza"]
APP = DATA["users"]["app"]
URL = labmod.site_url()
PROXY_EDGE = TOPO["hosts"][config.hosts_with_role(TOPO, "haproxy")[0]]["addresses"]["edge"]
WRITE_DSN = formats.conninfo(*formats.cluster_options(DATA, PROXY_EDGE, DATA["haproxy"]["write_port"],
                                                      ca=view.control_ca(DATA)), ("dbname", APP["database"]),
                             ("user", APP["username"]), ("password", APP["password"]), ("connect_timeout", 3))
PROBE = "halite_backup_probe"


def orchestrate(sls: str, pillar: dict | None = None, timeout: float = 1800):
    cmd = [BIN / "salt-run", "state.orchestrate", sls, "--out=json"]
    if pillar is not None:
        cmd.append(f"pillar={json.dumps(pillar)}")
    return run(cmd, timeout=timeout)


def steps(res) -> dict:
    """{step id: {"result": bool, "ret": {host: return}, "comment": str}} from salt-run's JSON."""
    data = json.loads(res.stdout)["data"]
    out = {}
    for step in next(iter(data.values())).values():
        changes = step.get("changes") or {}
        out[step["__id__"]] = {"result": step.get("result"), "ret": changes.get("ret", {}),
                               "comment": step.get("comment", "")}
    return out


def failure_text(res) -> str:
    return res.stdout[-8000:] + res.stderr[-3000:]


def on_backup(cmd: str, check: bool = True) -> str:
    """A shell command on the backup host (``halite lab ssh``), its output."""
    res = run([BIN / "halite", "lab", "ssh", BACKUP, cmd], timeout=300)
    if check:
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
    return res.stdout


def info() -> dict:
    rc, data = salt_ssh(BACKUP, "pgbackrest.info", STANZA)
    assert rc == 0, data
    (record,) = data[BACKUP]
    return record


def sql(query: str, params=None):
    with psycopg.connect(WRITE_DSN, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


def cluster_state() -> dict:
    return {m["name"]: (m["role"], m["state"], m.get("timeline")) for m in patroni_members()}


def test_deploy_made_the_stanza_an_encrypted_repository_and_a_first_backup(deployed):
    record = info()
    assert record["status"]["code"] == 0, record
    assert record["cipher"] == "aes-256-cbc", record
    assert any(b["type"] == "full" for b in record["backups"]), record
    # nothing in git: the passphrase came from the control machine's state folder
    secrets = (config.REPO / ".halite" / TOPO["name"] / "secrets.yaml").read_text()
    assert "backup.cipher_pass" in secrets


def test_orch_backup_takes_an_incremental_from_a_standby(deployed):
    before = {b["label"] for b in info()["backups"]}
    res = orchestrate("orch.backup")
    assert res.returncode == 0, failure_text(res)
    new = [b for b in info()["backups"] if b["label"] not in before]
    assert [b["type"] for b in new] == ["incr"], new
    # pgBackRest copied the files from a standby (backup-standby): its log says it waited for the replay there
    log = on_backup(f"grep -c 'replay on the standby' /var/log/pgbackrest/{STANZA}-backup.log")
    assert int(log.strip() or 0) >= 1, log


def test_restore_drill_passes_and_leaves_the_cluster_alone(deployed):
    wait_for(healthy_cluster, 180, 2, "a healthy cluster")
    before = cluster_state()
    res = orchestrate("orch.restore_drill")
    assert res.returncode == 0, failure_text(res)
    report = steps(res)["restore-drill"]["ret"][BACKUP]
    assert report["ok"] is True and not report["differences"], report
    assert report["tables"]["public.cars"]["rows"] > 0, report["tables"]
    assert all(t["ok"] and t["expected"] for t in report["tables"].values()), report["tables"]
    assert on_backup("ls -A /var/lib/halite-drill").strip() == ""  # the scratch copy is gone
    assert cluster_state() == before


@pytest.mark.parametrize("target, words", [
    ({"name": "no-such-point"}, "no-such-point"),
    ({"time": "2000-01-01 00:00:00+00"}, "before"),
    ({"time": "2099-01-01 00:00:00+00"}, "future"),
])
def test_restore_refuses_an_unreachable_target_and_changes_nothing(deployed, target, words):
    wait_for(healthy_cluster, 180, 2, "a healthy cluster")
    before = cluster_state()
    res = orchestrate("orch.restore", {"target": target})
    assert res.returncode != 0
    result = steps(res)
    assert result["restore-plan"]["result"] is False and words in json.dumps(result["restore-plan"]), result
    assert all(v["result"] is not True for k, v in result.items() if k != "restore-plan"), result
    assert cluster_state() == before


class Browser(threading.Thread):
    """Someone browsing the site during the accident and the restore: every status recorded."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.seen: list[tuple[float, int]] = []

    def run(self):
        deadline = time.monotonic() + 1800  # stops by itself
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(URL, timeout=5, context=view.site_ssl_context(DATA)) as resp:
                    self.seen.append((time.monotonic(), resp.status))
            except urllib.error.HTTPError as exc:
                self.seen.append((time.monotonic(), exc.code))
            except OSError:
                self.seen.append((time.monotonic(), 0))
            time.sleep(0.5)


def table_checksums(tables: list[str]) -> dict:
    """Row count and checksum of each table (on a member: a replica has them too), as restore_point makes them."""
    rc, data = salt_ssh(DB_HOSTS[0], "pg_move.checksums",
                        f"dsn=dbname={APP['database']} host=/var/run/postgresql user=postgres", "runas=postgres")
    assert rc == 0, data
    return {t: v for t, v in data[DB_HOSTS[0]].items() if t in tables}


def test_drop_table_undone_by_point_in_time_recovery_to_a_restore_point(deployed):
    wait_for(healthy_cluster, 180, 2, "a healthy cluster")
    timeline_before = max(t for _, _, t in cluster_state().values() if t)
    sql(f"DROP TABLE IF EXISTS {PROBE}")
    sql(f"CREATE TABLE {PROBE} (id serial PRIMARY KEY, batch int NOT NULL)")
    sql(f"INSERT INTO {PROBE} (batch) SELECT 1 FROM generate_series(1, 100)")
    point = time.strftime("before-accident-%H%M%S")
    res = orchestrate("orch.restore_point", {"name": point})
    assert res.returncode == 0, failure_text(res)
    made = [r for r in steps(res)["restore-point-create"]["ret"].values() if r.get("lsn")]
    assert len(made) == 1, steps(res)  # the primary made it, the replicas skipped
    expected = made[0]["tables"]
    assert expected[f"public.{PROBE}"]["rows"] == 100 and expected["public.cars"]["rows"] > 0, expected
    sql(f"INSERT INTO {PROBE} (batch) SELECT 2 FROM generate_series(1, 50)")

    browser = Browser()
    browser.start()
    try:
        time.sleep(2)
        sql("DROP TABLE cars CASCADE")  # the operator's error, while the site is browsed
        wait_for(lambda: any(code != 200 for _, code in browser.seen[-3:]), 30, 0.5, "the site to notice")
        res = orchestrate("orch.restore", {"target": {"name": point}})
        assert res.returncode == 0, failure_text(res)
        wait_for(lambda: browser.seen and browser.seen[-1][1] == 200, 120, 1, "the site to answer again")
    finally:
        browser.stop.set()
        browser.join(10)

    # the table is back, exactly as it was at the restore point; the first batch is there, the second is not
    assert sql(f"SELECT batch, count(*) FROM {PROBE} GROUP BY batch ORDER BY batch") == [(1, 100)]
    # every table as at the point, but the round-trip gate's own, which orch.restore's last gate wrote to
    gate = "public.halite_roundtrip"
    assert table_checksums([t for t in expected if t != gate]) == {t: v for t, v in expected.items() if t != gate}
    # one leader and every replica streaming, on a new timeline
    state = wait_for(healthy_cluster, 300, 2, "a healthy cluster after the restore")
    assert state
    timelines = {t for _, _, t in cluster_state().values()}
    assert len(timelines) == 1 and timelines.pop() > timeline_before
    # and a new backup can be taken
    res = orchestrate("orch.backup")
    assert res.returncode == 0, failure_text(res)


def test_drill_of_a_damaged_backup_says_what_is_wrong(deployed):
    res = orchestrate("orch.backup")
    assert res.returncode == 0, failure_text(res)
    newest = info()["backups"][-1]["label"]
    # damage one file of the newest backup in the repository (encrypted: it no longer decrypts)
    repo = DATA["backup"]["repo_path"]
    damage = (f"set -e; f=$(find {repo}/backup/{STANZA}/{newest}/pg_data -type f -printf '%s %p\\n' | sort -n "
              "| tail -1 | cut -d' ' -f2); size=$(stat -c %s \"$f\"); "
              "printf 'halite-damage-16' | dd of=\"$f\" bs=1 seek=$((size / 2)) conv=notrunc status=none; echo \"$f\"")
    damaged = on_backup(damage).strip()
    assert damaged.startswith(repo), damaged
    res = orchestrate("orch.restore_drill", {"target": {"latest": True}, "set": newest})
    assert res.returncode != 0
    drill = steps(res)["restore-drill"]
    text = json.dumps(drill)
    # pgBackRest's own error (a damaged encrypted, compressed file fails to decrypt or to decompress)
    assert "restore drill: pgbackrest restore" in text and "ERROR: [0" in text, drill
    assert any(w in text.lower() for w in ("decompress", "decrypt", "checksum", "cipher")), drill
    assert on_backup("ls -A /var/lib/halite-drill").strip() == ""
    # the damaged set goes; the repository serves a drill again
    on_backup(f"runuser -u postgres -- pgbackrest --stanza={STANZA} expire --set={newest}")


def test_a_member_powered_off_during_a_backup_leaves_the_repository_usable(deployed):
    wait_for(healthy_cluster, 180, 2, "a healthy cluster")
    # enough data for the backup to take a while
    sql("CREATE TABLE IF NOT EXISTS halite_backup_bulk AS SELECT g AS id, md5(g::text) AS pad "
        "FROM generate_series(1, 3000000) g")
    members = {m["name"]: m["role"] for m in patroni_members()}
    leader = next(h for h, r in members.items() if r == "leader")
    proc = subprocess.Popen(
        [str(BIN / "salt-run"), "state.orchestrate", "orch.backup", "pillar={\"type\": \"full\"}", "--out=json"],
        cwd=config.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the backup is running once pgBackRest holds its backup lock on the backup host
        def running():
            return on_backup(f"test -e /tmp/pgbackrest/{STANZA}-backup.lock && echo yes", check=False).strip() == "yes"
        wait_for(running, 120, 0.3, "the backup to start")
        faults.poweroff(leader)
        out, err = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    faults.poweron(leader)
    assert proc.returncode != 0, "the backup finished before the power cut: the test proved nothing"
    wait_for(healthy_cluster, 300, 2, "the cluster healed")
    # the next backup works (pgBackRest resumes or redoes the interrupted one) and a drill restores it
    res = orchestrate("orch.backup")
    assert res.returncode == 0, failure_text(res)
    res = orchestrate("orch.restore_drill")
    assert res.returncode == 0, failure_text(res)
    sql("DROP TABLE halite_backup_bulk")
