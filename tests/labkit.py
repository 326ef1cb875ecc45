"""Helpers for the lab tests: run commands from the repository root, call
salt-ssh with JSON output, summarise state results, poll with a bound."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
os.environ.setdefault("TMPDIR", str(REPO / ".salt-run" / "tmp"))
Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)


def run(cmd: list[str], timeout: float = 900, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    res = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def salt_ssh(tgt: str, *args: str, tgt_type: str = "glob", timeout: float = 900, env: dict | None = None):
    """Run salt-ssh with JSON output; returns (returncode, {host: result})."""
    cmd = [BIN / "salt-ssh", "--out=json", "--static", "--no-color"]
    if tgt_type == "list":
        cmd.append("-L")
    res = run(cmd + [tgt, *args], timeout=timeout, env=env)
    try:
        data = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        raise AssertionError(f"salt-ssh printed no JSON (rc {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.returncode, data


def state_summary(data: dict) -> dict:
    """{host: {"failed": [...ids], "changed": {id: changes}, "none": [...ids], "total": n}}."""
    out = {}
    for host, ret in data.items():
        if not isinstance(ret, dict):
            out[host] = {"failed": [f"not a state result: {ret!r}"[:2000]], "changed": {}, "none": [], "total": 0}
            continue
        failed, changed, none = [], {}, []
        for key, st in ret.items():
            sid = key.split("_|-")[1] if "_|-" in key else key
            if st.get("result") is False:
                failed.append(f"{sid}: {st.get('comment')}")
            elif st.get("result") is None:
                none.append(sid)
            if st.get("changes"):
                changed[sid] = st["changes"]
        out[host] = {"failed": failed, "changed": changed, "none": none, "total": len(ret)}
    return out


def python_on(host: str, program: str, timeout: float = 300):
    """Run ``program`` with ``python3 -`` on ``host`` (``control``: this machine) and return the
    JSON its last output line prints. The program travels on stdin: secrets in it never reach
    a command line."""
    argv = ["python3", "-"] if host == "control" else [str(BIN / "halite"), "lab", "ssh", host, "python3", "-"]
    res = subprocess.run(argv, input=program, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{host}: {res.stderr[-2000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def on_hosts(hosts, fn):
    """``{host: fn(host)}``, the hosts handled at once (each ``fn`` mostly waits on ssh)."""
    from concurrent.futures import ThreadPoolExecutor

    hosts = list(hosts)
    with ThreadPoolExecutor(max_workers=len(hosts) or 1) as pool:
        return dict(zip(hosts, pool.map(fn, hosts)))


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def db_hosts() -> list[str]:
    from halite import config
    return config.hosts_with_role(config.load()["topology"], "db")


def patroni_members() -> list[dict]:
    """patroni.members as the first db host sees them."""
    first = db_hosts()[0]
    rc, data = salt_ssh(first, "patroni.members")
    assert rc == 0, data
    return data[first]


def healthy_cluster():
    """The leader's name when there is one leader and every other member streams; else False."""
    ms = patroni_members()
    leaders = [m for m in ms if m["role"] == "leader"]
    streaming = [m for m in ms if m["role"] != "leader" and m["state"] == "streaming"]
    return len(leaders) == 1 and len(streaming) == len(db_hosts()) - 1 and leaders[0]["name"]


def prometheus(path: str, **params):
    """One GET of Prometheus's HTTP API on the monitoring host (``/api/v1/<path>``), from
    the control machine as an operator reads it; its ``data``."""
    import urllib.parse
    import urllib.request

    from halite import config, view
    base = view.prometheus_url(config.load())
    assert base, "the topology has no monitoring host"
    url = f"{base}/api/v1/{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=15) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def alert_firing(name: str, host: str) -> bool:
    """Whether Prometheus holds the alert ``name`` for ``host`` in state firing."""
    return any(a["labels"].get("alertname") == name and a["labels"].get("host") == host and a["state"] == "firing"
               for a in prometheus("alerts")["alerts"])
