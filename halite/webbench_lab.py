"""``make bench-web``: the site on the old server against the site on the cluster.

After ``orch.migrate`` the site (gunicorn on 127.0.0.1:8000 on the app host)
reads from the cluster. For the comparison this starts, for the length of the
run only, a second gunicorn of the same code on 127.0.0.1:8001 reading from the
old (legacy) server, which still holds the same data. The load generator
(:mod:`halite.webbench`) runs in the app host's network namespace and loads
both over its loopback, one after the other, with the same settings; results
go to ``bench/results/web.json`` and ``web.md``. Both are gunicorn's plain HTTP on
the loopback, behind nginx: the site's TLS and nginx's request limit per client
(``web.rate_limit``) are not in the measured path.
"""
from __future__ import annotations

import subprocess
import sys
import time

from halite import config, formats, lab

UNIT = "carsale-bench-legacy"
PORT = 8001


def _in_host(host: str, cmd: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    pid = lab.leader_pid(host)
    res = subprocess.run(["nsenter", "-t", str(pid), "-a", *cmd], capture_output=True, text=True, timeout=120,
                         input=input)
    if check and res.returncode != 0:
        raise RuntimeError(f"{host}: {' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def main(duration: float = 10, concurrency: int = 8, out: str = "bench/results") -> int:
    data = config.load()
    topo = data["topology"]
    host = config.hosts_with_role(topo, "app")[0]
    web = data["web"]
    dsn = formats.web_dsns(data, host)["legacy"]
    env = f"/run/{UNIT}.env"
    # the secrets go through stdin into a systemd EnvironmentFile, never into a command line
    _in_host(host, ["sh", "-c", 'umask 077; cat > "$1"; chown "$2" "$1"', "sh", env, web["user"]],
             input=formats.systemd_env_line("HALITE_WEB_WRITE_DSN", dsn)
             + formats.systemd_env_line("HALITE_WEB_READ_DSN", dsn)
             + formats.systemd_env_line("HALITE_WEB_SECRET_KEY", web["secret_key"]))
    _in_host(host, ["systemctl", "stop", UNIT], check=False)
    _in_host(host, ["systemctl", "reset-failed", UNIT], check=False)
    _in_host(host, ["systemd-run", f"--unit={UNIT}", f"--uid={web['user']}", f"--gid={web['user']}",
                    f"--property=EnvironmentFile={env}", f"--working-directory={web['home']}/app",
                    f"{web['home']}/venv/bin/gunicorn", "--bind", f"127.0.0.1:{PORT}",
                    "--workers", str(web["workers"]), "--threads", str(web["threads"]), "halite_web.wsgi:app"])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            ok = _in_host(host, ["python3", "-c", f"import urllib.request;urllib.request.urlopen("
                                                  f"'http://127.0.0.1:{PORT}/healthz', timeout=2)"], check=False)
            if ok.returncode == 0:
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"the old-server site on {host}:{PORT} did not answer within 60 s")
        site = web["bind"]
        pid = lab.leader_pid(host)
        cmd = ["nsenter", "-t", str(pid), "-n", sys.executable, "-m", "halite.webbench",
               "--target", f"old=http://127.0.0.1:{PORT}", "--target", f"cluster=http://{site}",
               "--duration", str(duration), "--concurrency", str(concurrency),
               "--car-ids-from", f"http://{site}/api/cars?per_page=50", "--out", out]
        print(f"[bench-web] old server: gunicorn on {host} 127.0.0.1:{PORT}; cluster: the site on {site}", flush=True)
        return subprocess.run(cmd, timeout=duration * 12 + 120).returncode
    finally:
        _in_host(host, ["systemctl", "stop", UNIT], check=False)
        _in_host(host, ["rm", "-f", env], check=False)


if __name__ == "__main__":
    sys.exit(main())
