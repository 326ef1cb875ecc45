"""Render states without touching a host: salt-call --local with the host's
id and grains set in a throwaway minion config."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SALT_CALL = REPO / ".venv/bin/salt-call"


def salt_call(tmp: Path, host: str, family: str, *args: str, virtual: str = "kvm",
              settings: Path | None = None, major: int | None = None,
              topology: Path | None = None, os_name: str | None = None) -> subprocess.CompletedProcess:
    """Run ``salt-call --local --out=json ARGS`` as ``host`` of OS ``family``.

    :param settings: a HALITE_SETTINGS file merged over the pillar, if any.
    :param major: the ``osmajorrelease`` grain (default: 12 for Debian, 9 for RedHat); a
        RedHat render's topology names it as every host's ``os_release``.
    :param topology: a HALITE_TOPOLOGY file, if not the lab's.
    :param os_name: the ``os`` grain (default: Debian, or Rocky for RedHat).
    """
    major = major if major is not None else (12 if family == "Debian" else 9)
    cfg = tmp / f"{host}-{family}-{major}"
    cfg.mkdir(exist_ok=True)
    grains = {"os_family": family, "virtual": virtual, "id": host,
              "os": os_name or ("Debian" if family == "Debian" else "Rocky"), "osmajorrelease": major}
    (cfg / "minion").write_text(yaml.safe_dump({
        "id": host,
        "file_client": "local",
        "root_dir": str(cfg / "root"),
        "file_roots": {"base": [str(REPO / "salt"), str(REPO / "etc/salt/extroot")]},
        "pillar_roots": {"base": [str(REPO / "pillar")]},
        "grains": grains,
        "log_level_logfile": "quiet",
    }))
    env = dict(os.environ)
    if topology is not None:
        env["HALITE_TOPOLOGY"] = str(topology)
    if family in ("RedHat",) and "HALITE_TOPOLOGY" not in env:
        # the topology says which family and release each host runs: a RedHat render needs a
        # RedHat topology of that major (map.jinja refuses a host whose osmajorrelease differs)
        topo = yaml.safe_load((REPO / "pillar/topology.yaml").read_text())
        for spec in topo["hosts"].values():
            spec["os_family"] = family
            spec["os_release"] = major
        (cfg / "topology.yaml").write_text(yaml.safe_dump(topo))
        env["HALITE_TOPOLOGY"] = str(cfg / "topology.yaml")
    if settings is not None:
        env["HALITE_SETTINGS"] = str(settings)
    return subprocess.run([str(SALT_CALL), "--local", "-c", str(cfg), "--out=json", "--retcode-passthrough", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=180, env=env)


def answer(tmp: Path, host: str, *args: str, settings: Path | None = None) -> dict:
    """``salt-call --local ARGS`` as Debian ``host``: its parsed answer (a failed call fails the test)."""
    res = salt_call(tmp, host, "Debian", *args, settings=settings)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout)["local"]


def render_template(tmp: Path, host: str, source: str, settings: Path | None = None, tag: str = "",
                    **context) -> str:
    """The file template ``salt://source`` rendered as ``host`` with ``context`` (what its state
    passes), through ``cp.get_template``. ``tag`` keeps the outputs of several settings apart."""
    dest = tmp / f"{host}-{tag}-{source.replace('/', '_')}"
    # ensure_ascii=False: salt-call reads arguments as YAML, and Salt's loader refuses \ud83d-style escapes
    answer(tmp, host, "cp.get_template", f"salt://{source}", str(dest),
           *[k + "=" + json.dumps(v, ensure_ascii=False) for k, v in context.items()], settings=settings)
    return dest.read_text(encoding="utf-8")


def arg(states: dict, sid: str, key: str):
    """The value of one argument of a state (``- key: value`` in its list)."""
    for mod, body in states[sid].items():
        if mod.startswith("__"):
            continue
        for item in body:
            if isinstance(item, dict) and key in item:
                return item[key]
    raise KeyError(f"{sid} has no argument {key}")


#: nginx for the render tests: installed, or Debian's package that `make deps` unpacks
#: under .venv/nginx (nothing installed, no service started).
NGINX = shutil.which("nginx") or shutil.which("nginx", path=f"/usr/sbin:{REPO / '.venv/nginx/usr/sbin'}")


def nginx_sandbox(text: str, run: Path) -> Path:
    """A rendered nginx.conf rewritten to run unprivileged under ``run``: logs, pid and temp
    folders moved there, mime.types from wherever this nginx keeps it. Returns the file."""
    assert NGINX, "nginx not found: run `make deps` (it unpacks Debian's nginx under .venv/nginx)"
    (run / "log").mkdir(parents=True, exist_ok=True)
    mime = next((str(p) for p in (Path("/etc/nginx/mime.types"), Path(NGINX).parents[2] / "etc/nginx/mime.types")
                 if p.exists()), None)
    assert mime, "nginx's mime.types not found next to the nginx binary"
    temp = " ".join(f"{k}_temp_path {run}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = (text.replace("/var/log/nginx", str(run / "log")).replace("/run/nginx.pid", str(run / "nginx.pid"))
            .replace("/etc/nginx/mime.types", mime).replace("http {", f"http {{\n    {temp}"))
    (run / "nginx.conf").write_text(text)
    return run / "nginx.conf"


#: HAProxy for the render tests: installed, or Debian's package (and the libraries this
#: machine lacks) unpacked under .venv/haproxy (`apt-get download haproxy liblua5.3-0
#: libopentracing-c-wrapper0 libopentracing1`, then `dpkg -x` each): nothing installed.
HAPROXY_LIBS = REPO / ".venv/haproxy/usr/lib/x86_64-linux-gnu"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path=f"/usr/sbin:{REPO / '.venv/haproxy/usr/sbin'}")


def haproxy_check(text: str, run: Path) -> subprocess.CompletedProcess:
    """``haproxy -c`` on a rendered haproxy.cfg, rewritten to be checked unprivileged under
    ``run``: this user instead of haproxy, a throwaway CA certificate instead of halite's."""
    assert HAPROXY, "haproxy not found: run `make deps` (it unpacks Debian's haproxy under .venv/haproxy)"
    run.mkdir(parents=True, exist_ok=True)
    ca = run / "ca.crt"
    if not ca.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(run / "ca.key"), "-out", str(ca), "-days", "2", "-subj", "/CN=test"],
                       check=True, capture_output=True)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    text = (text.replace("/etc/halite/tls/ca.crt", str(ca)).replace("    user haproxy", f"    user {user}")
            .replace("    group haproxy", f"    group {group}"))
    (run / "haproxy.cfg").write_text(text)
    env = {**os.environ, "LD_LIBRARY_PATH": str(HAPROXY_LIBS)}
    return subprocess.run([HAPROXY, "-c", "-f", str(run / "haproxy.cfg")], capture_output=True, text=True, env=env)
