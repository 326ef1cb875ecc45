"""Render the car market's states (web.*, legacy.*) and orch.migrate for the
lab's hosts without touching a host (salt-call --local, grains in config), and
render their file templates; gunicorn's configuration is also run for real to
show that a reload picks up a changed site.env."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import rendering
from rendering import arg
from halite import config, formats, model, view

REPO = rendering.REPO
TO_CLUSTER = json.dumps({"halite": {"web": {"database_target": "cluster"}}})
# the lab's passwords as libpq values (halite.formats; tests/render/test_render_secrets.py reads them back)
QUOTED_APP_PW = formats.conninfo(("password", config.load()["users"]["app"]["password"])).split("=", 1)[1]
QUOTED_MOVE_PW = formats.conninfo(("password", config.load()["users"]["legacy_move"]["password"])).split("=", 1)[1]


def settings_file(tmp: Path, extra: dict | None = None) -> Path:
    """A HALITE_SETTINGS file: the caller's own (if any) plus ``extra``."""
    own = os.environ.get("HALITE_SETTINGS")
    data = yaml.safe_load(Path(own).read_text()) or {} if own and Path(own).exists() else {}
    data = config.deep_merge(data, extra or {})
    path = tmp / f"settings-{abs(hash(json.dumps(data, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def salt_call(tmp: Path, host: str, family: str, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    return rendering.salt_call(tmp, host, family, *args, settings=settings_file(tmp, extra))


def show(tmp: Path, host: str, sls: str, *args: str, family: str = "Debian", extra: dict | None = None) -> dict:
    res = salt_call(tmp, host, family, "state.show_sls", sls, *args, extra=extra)
    assert res.returncode == 0, res.stdout + res.stderr
    states = json.loads(res.stdout)["local"]
    assert isinstance(states, dict), states
    return states


def template(tmp: Path, source: str, **context) -> str:
    """Render a file template as file.managed would, with the context the state passes."""
    dest = tmp / ("tpl-" + source.replace("/", "_"))
    args = [f"{k}={json.dumps(v)}" for k, v in context.items()]
    res = salt_call(tmp, "app-01", "Debian", "cp.get_template", f"salt://{source}", str(dest), *args)
    assert res.returncode == 0 and dest.exists(), res.stdout + res.stderr
    return dest.read_text()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-web")


def test_app_host_gets_the_site_and_the_legacy_server(tmp):
    res = salt_call(tmp, "app-01", "Debian", "state.show_highstate")
    assert res.returncode == 0, res.stdout + res.stderr
    ids = set(json.loads(res.stdout)["local"])
    assert {"web-app-code", "web-pip-install", "web-site-env", "web-service-running", "web-nginx-config",
            "web-schema-migrate", "legacy-cluster-created", "legacy-role-move", "haproxy-config-file"} <= ids
    res = salt_call(tmp, "db-01", "Debian", "state.show_highstate")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [i for i in json.loads(res.stdout)["local"] if i.startswith(("web-", "legacy-"))]


def test_site_starts_on_the_legacy_server(tmp):
    states = show(tmp, "app-01", "web")
    site = arg(states, "web-site-env", "context")["site"]
    assert site["target"] == "legacy"
    assert site["write_dsn"] == site["read_dsn"] == \
        "host=127.0.0.1 port=5433 dbname=carsale user=carsale password=" + QUOTED_APP_PW
    assert site["patroni_urls"] == ""
    assert arg(states, "web-target-file", "contents") == "legacy"
    assert arg(states, "web-site-env", "mode") == "0640" and arg(states, "web-site-env", "show_changes") is False
    # the schema waits for the legacy server; demo data only there
    assert {"sls": "legacy"} in arg(states, "web-schema-migrate", "require")
    assert arg(states, "web-schema-migrate", "stateful") is True
    assert arg(states, "web-schema-migrate", "env")["HALITE_WEB_WRITE_DSN"] == site["write_dsn"]
    assert "seed --cars 3000" in arg(states, "web-demo-data", "name")
    # code from the repository's web/ (salt/web/app is a link to it), requirements from the wheel mirror
    assert (REPO / "salt/web/app").resolve() == REPO / "web"
    assert arg(states, "web-app-code", "source") == "salt://web/app"
    assert "--no-index --find-links /srv/halite-mirror/pypi" in arg(states, "web-pip-install", "name")
    # nginx on the edge address (https, http redirecting: halite.view.site_view), checked before it
    # is installed; reloads on settings
    nginx = arg(states, "web-nginx-config", "context")
    assert nginx["site"]["address"] == "10.77.0.20" and nginx["site"]["http_port"] == 80
    assert nginx["site"]["https_port"] == 443 and nginx["site"]["tls"] is True and nginx["upstream"] == "127.0.0.1:8000"
    assert arg(states, "web-nginx-config", "check_cmd") == "nginx -t -q -c"
    assert arg(states, "web-service-running", "reload") is True
    assert {"file": "web-site-env"} in arg(states, "web-service-running", "watch")


def test_site_on_the_cluster_by_pillar(tmp):
    states = show(tmp, "app-01", "web", f"pillar={TO_CLUSTER}")
    site = arg(states, "web-site-env", "context")["site"]
    assert site["target"] == "cluster"
    # through HAProxy on this host, verified as the cluster's service name (TLS on the pgbouncer
    # link by default; tests/render/test_render_tls_pg.py renders both ways)
    tls = "host=halite.halite.lab hostaddr=127.0.0.1 port={} sslmode=verify-full sslrootcert=/etc/halite/tls/ca.crt"
    assert site["write_dsn"] == tls.format(5000) + " dbname=carsale user=carsale password=" + QUOTED_APP_PW
    assert site["read_dsn"] == tls.format(5001) + " dbname=carsale user=carsale password=" + QUOTED_APP_PW
    # Patroni's API over https (tls.unsafe_plaintext leaves it alone), verified against halite's CA
    assert site["patroni_urls"] == "https://10.77.1.11:8008,https://10.77.1.12:8008,https://10.77.1.13:8008"
    assert site["patroni_ca_file"] == "/etc/halite/tls/ca.crt"
    assert arg(states, "web-target-file", "contents") == "cluster"
    assert {"sls": "haproxy"} in arg(states, "web-schema-migrate", "require")
    assert "web-demo-data" not in states


def test_the_target_file_keeps_the_last_choice(tmp):
    marker = tmp / "target"
    marker.write_text("cluster\n")
    states = show(tmp, "app-01", "web.config", extra={"web": {"target_file": str(marker)}})
    assert arg(states, "web-site-env", "context")["site"]["target"] == "cluster"
    # pillar still wins over the file
    states = show(tmp, "app-01", "web.config", 'pillar={"halite": {"web": {"database_target": "legacy"}}}',
                  extra={"web": {"target_file": str(marker)}})
    assert arg(states, "web-site-env", "context")["site"]["target"] == "legacy"
    marker.write_text("elsewhere\n")
    res = salt_call(tmp, "app-01", "Debian", "state.show_sls", "web.config", extra={"web": {"target_file": str(marker)}})
    assert res.returncode != 0 and "is neither legacy nor cluster" in res.stdout + res.stderr


def test_switch_to_the_cluster_needs_a_finished_move(tmp):
    states = show(tmp, "app-01", "web.switch", f"pillar={TO_CLUSTER}")
    guard = "web-switch-guard-move-finished"
    assert "site-check moved" in arg(states, guard, "name")
    assert arg(states, guard, "env")["LEGACY_DSN"].startswith("host=127.0.0.1 port=5433 ")
    assert {"file": "web-site-env"} in arg(states, guard, "require_in")
    assert arg(states, guard, "unless") == "grep -qx cluster /etc/carsale/target"
    assert {"file": "web-site-env"} in arg(states, "web-switch-reload", "onchanges")
    assert "web-pip-install" not in states  # the switch alone: no code, no packages
    assert guard not in show(tmp, "app-01", "web.switch")


def test_move_runs_on_the_leader_with_the_local_superuser(tmp):
    states = show(tmp, "db-01", "web.move")
    body = states["web-move-database-to-cluster"]["module"]
    kwargs = {k: v for item in next(i for i in body if isinstance(i, dict) and "pg_move.move" in i)["pg_move.move"]
              for k, v in item.items()}
    assert kwargs["target_dsn"] == "host=/var/run/postgresql port=5432 dbname=carsale user=postgres"
    assert kwargs["source_dsn"] == kwargs["source_conninfo_for_target"] == \
        "host=10.77.1.20 port=5433 dbname=carsale user=legacy_move password=" + QUOTED_MOVE_PW
    assert kwargs["role"] == "carsale" and kwargs["runas"] == "postgres"
    # a cluster whose tables hold rows is refused; only the migrations' bookkeeping is emptied
    assert kwargs["overwrite"] is False and kwargs["expendable"] == ["public.schema_migrations"]
    assert {"fun": "patroni.is_leader"} in arg(states, "web-move-database-to-cluster", "onlyif")


def test_site_check_gate(tmp):
    states = show(tmp, "app-01", "web.check", f"pillar={TO_CLUSTER}")
    name = arg(states, "web-site-answers", "name")
    # over https, verified with halite's CA on the host (the certificate names the edge address)
    assert "--url https://10.77.0.20/ --ca /etc/halite/tls/ca.crt " in name and "--expect-port 5432" in name
    assert "--expect-hosts 10.77.1.11,10.77.1.12,10.77.1.13" in name and "--downtime" not in name
    name = arg(show(tmp, "app-01", "web.check"), "web-site-answers", "name")
    assert "--expect-hosts 127.0.0.1 --expect-port 5433" in name


def test_legacy_server(tmp):
    states = show(tmp, "app-01", "legacy")
    assert "pg_createcluster --port 5433" in arg(states, "legacy-cluster-created", "name")
    assert arg(states, "legacy-cluster-created", "creates") == "/etc/postgresql/15/legacy/postgresql.conf"
    ctx = arg(states, "legacy-config-file", "context")
    assert ctx["listen"] == ["10.77.1.20", "127.0.0.1"] and ctx["parameters"]["wal_level"] == "logical"
    assert arg(states, "legacy-hba-file", "context")["movers"] == ["10.77.1.11", "10.77.1.12", "10.77.1.13"]
    assert arg(states, "legacy-service-running", "name") == "postgresql@15-legacy"
    assert arg(states, "legacy-role-move", "superuser") is True and arg(states, "legacy-role-move", "db_port") == 5433
    assert arg(states, "legacy-database-app", "owner") == "carsale"
    # RedHat hosts cannot hold the role: the state says so instead of half-working
    states = show(tmp, "app-01", "legacy", family="RedHat")
    assert "fail_without_changes" in states["legacy-packages"]["test"]


def test_legacy_firewall_and_web_port():
    rules = {r["name"]: r for r in config.firewall_rules(config.load(), "app-01")}
    assert rules["legacy-postgresql"] == {"name": "legacy-postgresql", "ports": [5433],
                                          "sources": ["10.77.1.11", "10.77.1.12", "10.77.1.13"]}
    # the https port from the same entry (TLS on the site): tests/render/test_render_tls_site.py
    assert rules["web-http"]["ports"] == [80, 443] and rules["web-http"]["sources"] == ["10.77.0.1"]


def test_orch_migrate_order(tmp):
    steps = show(tmp, "control", "orch.migrate")
    assert set(steps) == {"migrate-cluster-schema", "migrate-move-database", "migrate-switch-site", "migrate-site-on-cluster",
                          "migrate-wipe-salt-ssh"}
    # the last step, whatever happened: salt-ssh's thin directory (the pillar in its tarball) removed
    assert arg(steps, "migrate-wipe-salt-ssh", "wipe") is True and arg(steps, "migrate-wipe-salt-ssh", "tgt") == "*"
    assert arg(steps, "migrate-wipe-salt-ssh", "order") == "last"
    assert arg(steps, "migrate-cluster-schema", "sls") == "web.schema"
    assert arg(steps, "migrate-cluster-schema", "pillar") == json.loads(TO_CLUSTER)
    assert arg(steps, "migrate-move-database", "tgt") == "db-01,db-02,db-03"
    assert {"salt": "migrate-cluster-schema"} in arg(steps, "migrate-move-database", "require")
    assert arg(steps, "migrate-switch-site", "sls") == "web.switch"
    assert arg(steps, "migrate-switch-site", "pillar") == json.loads(TO_CLUSTER)
    assert {"salt": "migrate-move-database"} in arg(steps, "migrate-switch-site", "require")
    assert arg(steps, "migrate-site-on-cluster", "pillar")["halite"]["move"]["report_downtime"] is True
    assert {"salt": "migrate-switch-site"} in arg(steps, "migrate-site-on-cluster", "require")


def test_templates(tmp):
    env = template(tmp, "web/files/site.env.jinja", site={
        "target": "cluster", "write_dsn": "host=127.0.0.1 port=5000 user=carsale password='a b'",
        "read_dsn": "host=127.0.0.1 port=5001", "patroni_urls": "https://10.77.1.11:8008",
        "patroni_ca_file": "/etc/halite/tls/ca.crt", "secret_key": "s3"},
        secure_cookies=True)
    assert "HALITE_WEB_SESSION_COOKIE_SECURE=1\n" in env
    assert "HALITE_WEB_WRITE_DSN=host=127.0.0.1 port=5000 user=carsale password='a b'\n" in env
    assert "HALITE_WEB_PATRONI_URLS=https://10.77.1.11:8008\n" in env and "HALITE_WEB_SECRET_KEY=s3\n" in env
    assert "HALITE_WEB_PATRONI_CA_FILE=/etc/halite/tls/ca.crt\n" in env
    unit = template(tmp, "web/files/carsale.service.jinja", user="carsale", home="/opt/carsale", config_dir="/etc/carsale")
    assert "ExecStart=/opt/carsale/venv/bin/gunicorn --config /etc/carsale/gunicorn.conf.py\n" in unit
    assert "ExecReload=/bin/kill -s HUP $MAINPID\n" in unit and "User=carsale\n" in unit
    hba = template(tmp, "legacy/files/pg_hba.conf.jinja", database="carsale", app="carsale", mover="legacy_move",
                   movers=["10.77.1.11", "10.77.1.12"])
    lines = [" ".join(line.split()) for line in hba.splitlines() if line and not line.startswith("#")]
    assert lines == ["local all postgres peer", "host carsale carsale 127.0.0.1/32 scram-sha-256",
                     "host carsale legacy_move 10.77.1.11/32 scram-sha-256",
                     "host carsale legacy_move 10.77.1.12/32 scram-sha-256"]
    conf = template(tmp, "legacy/files/halite.conf.jinja", listen=["10.77.1.20", "127.0.0.1"], port=5433,
                    parameters={"wal_level": "logical", "password_encryption": "scram-sha-256"})
    assert "listen_addresses = '10.77.1.20,127.0.0.1'\nport = 5433\n" in conf
    assert "password_encryption = 'scram-sha-256'\nwal_level = 'logical'" in conf


def test_nginx_config_passes_nginx_t(tmp):
    # the plain-HTTP configuration (tls.unsafe_plaintext: site); with TLS: test_render_tls_site.py
    plain = model.dump(model.validate(config.deep_merge(config.raw(), {"tls": {"unsafe_plaintext": ["site"]}})))
    site = {**view.site_view(plain, "app-01"), "address": "127.0.0.1", "http_port": 18080}
    text = template(tmp, "web/files/nginx.conf.jinja", nginx_user="root", site=site,
                    upstream="127.0.0.1:8000", static_dir="/opt/carsale/app/halite_web/static/")
    conf = rendering.nginx_sandbox(text, tmp / "nginx")
    res = subprocess.run([rendering.NGINX, "-t", "-c", str(conf), "-e", str(conf.parent / "log/error.log")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_takes_a_changed_site_env_on_reload(tmp):
    """The mechanism web.switch relies on: SIGHUP, no restart, new DSN in the workers."""
    gunicorn = REPO / ".venv/bin/gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in .venv")
    app = tmp / "gunicorn-app"
    app.mkdir(exist_ok=True)
    (app / "envapp.py").write_text(
        "import os\n\n\ndef app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ.get('HALITE_WEB_WRITE_DSN', '-').encode()]\n")
    site_env = tmp / "site.env"
    site_env.write_text("# test\nHALITE_WEB_WRITE_DSN=host=127.0.0.1 port=5433 dbname=carsale\n")
    port = free_port()
    conf = tmp / "gunicorn.conf.py"
    conf.write_text(template(tmp, "web/files/gunicorn.conf.py.jinja", env_file=str(site_env), app_dir=str(app),
                             bind=f"127.0.0.1:{port}", workers=2, threads=2))
    proc = subprocess.Popen([str(gunicorn), "--config", str(conf), "envapp:app"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answer(expected: str, timeout: float = 20) -> str:
        deadline, got = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    got = resp.read().decode()
                if got == expected:
                    return got
            except OSError:
                pass
            time.sleep(0.2)
        return got

    try:
        assert answer("host=127.0.0.1 port=5433 dbname=carsale") == "host=127.0.0.1 port=5433 dbname=carsale"
        site_env.write_text("HALITE_WEB_WRITE_DSN=host=127.0.0.1 port=5000 dbname=carsale\n")
        proc.send_signal(signal.SIGHUP)
        assert answer("host=127.0.0.1 port=5000 dbname=carsale") == "host=127.0.0.1 port=5000 dbname=carsale"
        assert proc.poll() is None  # the same master: reloaded, not restarted
    finally:
        proc.terminate()
        proc.wait(timeout=20)
