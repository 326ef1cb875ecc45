"""The site over TLS (halite.view.site_view, salt/web/files/nginx.conf.jinja) and
HAProxy's stats page behind its login (halite.view.haproxy_stats, the ``listen
stats`` section of salt/haproxy/files/haproxy.cfg.jinja), rendered as Salt renders
them. nginx's configuration is checked with ``nginx -t`` and then run for real
(unprivileged, on 127.0.0.1, with a certificate from halite.pki written to a
temporary folder): the redirect, HSTS, the security headers on every answer and
the request limit are read from real answers.
"""
from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import rendering
from rendering import arg
from halite import config, model, pki, view
from test_render_web import show, template
from localkit import stop

REPO = rendering.REPO
NGINX = rendering.NGINX
PLAIN = {"tls": {"unsafe_plaintext": ["site"]}}


def settings(extra: dict | None = None) -> dict:
    """The lab's validated settings with ``extra`` merged over them."""
    return model.dump(model.validate(config.deep_merge(config.raw(), extra or {})))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-tls-site")


@pytest.fixture(scope="module")
def certs(tmp) -> dict:
    """halite's CA and a certificate for 127.0.0.1/localhost, as files (the key 0600)."""
    where = tmp / "pki"
    ca = pki.ensure_ca(where, "render")
    cert, key = pki.host_cert(where, "app-01", ["app-01", "localhost"], ["127.0.0.1"], days=30,
                              renew_before_days=1)
    out = {}
    for name, text in (("ca", ca), ("cert", cert), ("key", key)):
        path = tmp / f"tls-{name}.pem"
        path.write_text(text)
        path.chmod(0o600)
        out[name] = str(path)
    return out


def nginx_conf(tmp: Path, name: str, site: dict, static_dir: Path, upstream: str = "127.0.0.1:9") -> Path:
    """The rendered nginx.conf with logs, pid and temp folders moved under ``tmp/name``."""
    text = template(tmp, "web/files/nginx.conf.jinja", nginx_user="root", site=site, upstream=upstream,
                    static_dir=f"{static_dir}/")
    return rendering.nginx_sandbox(text, tmp / name)


def nginx_t(conf: Path) -> None:
    res = subprocess.run([NGINX, "-t", "-c", str(conf), "-e", str(conf.parent / "log/error.log")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


class Nginx:
    """nginx in the foreground with ``conf``, stopped (by its own PID) on exit."""

    def __init__(self, conf: Path, ports: list[int]):
        self.conf, self.ports = conf, ports

    def __enter__(self):
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-e", str(self.conf.parent / "log/error.log"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert self.proc.poll() is None, self.proc.stderr.read().decode()
                    assert time.monotonic() < deadline, f"nginx does not listen on {port}"
                    time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        stop(self.proc)


def get(port: int, path: str, context: ssl.SSLContext | None = None) -> http.client.HTTPResponse:
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=5))
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def security_headers_of(resp) -> dict:
    return {name: resp.getheader(name) for name in
            ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")}


EXPECTED_HEADERS = {"Content-Security-Policy": view.site_csp(), "X-Frame-Options": "DENY",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin"}


@pytest.fixture(scope="module")
def static_dir(tmp) -> Path:
    path = tmp / "static"
    path.mkdir(exist_ok=True)
    (path / "style.css").write_text("body{}\n")
    return path


# --------------------------------------------------------------------------
# the state and the view


def test_nginx_state_prints_the_site_view_and_follows_the_certificate(tmp):
    states = show(tmp, "app-01", "web.nginx")
    site = arg(states, "web-nginx-config", "context")["site"]
    expected = view.site_view(config.load(), "app-01")
    assert site == expected
    assert site["url"] == "https://10.77.0.20/" and site["redirect"] == "https://$host$request_uri"
    assert site["cert"] == "/etc/halite/tls/host.crt" and site["key"] == "/etc/halite/tls/host.key"
    assert site["hsts"] == "max-age=31536000"
    for sid, key in (("web-nginx-config", "require"), ("web-nginx-running", "watch")):
        assert {"file": "halite-tls-cert"} in arg(states, sid, key) and {"file": "halite-tls-key"} in arg(states, sid, key)
    # plain: no certificate to wait for
    states = show(tmp, "app-01", "web.nginx", extra=PLAIN)
    assert arg(states, "web-nginx-config", "context")["site"]["tls"] is False
    assert {"file": "halite-tls-cert"} not in arg(states, "web-nginx-running", "watch")


def test_site_check_without_tls_has_no_ca(tmp):
    name = arg(show(tmp, "app-01", "web.check", extra=PLAIN), "web-site-answers", "name")
    assert "--url http://10.77.0.20/ --target" in name and "--ca" not in name


def test_https_port_is_opened_from_the_sources_of_the_http_entry():
    rules = {r["name"]: r for r in view.firewall_rules(settings(), "app-01")}
    http_entry = next(s for s in settings()["firewall"]["services"] if 80 in s["ports"] and "app" in s["to"])
    assert rules[http_entry["name"]]["ports"] == [80, 443] and rules["web-http"]["sources"] == ["10.77.0.1"]
    rules = {r["name"]: r for r in view.firewall_rules(settings({"web": {"https_port": 8443}}), "app-01")}
    assert rules["web-http"]["ports"] == [80, 8443]
    rules = {r["name"]: r for r in view.firewall_rules(settings(PLAIN), "app-01")}
    assert rules["web-http"]["ports"] == [80]
    # no other host opens it
    for host in ("db-01", "jump-01", "backup-01"):
        assert not [r for r in view.firewall_rules(settings(), host) if 443 in r["ports"]]


# --------------------------------------------------------------------------
# nginx with TLS, for real


@pytest.fixture(scope="module")
def tls_site(certs) -> dict:
    """site_view for nginx on 127.0.0.1, free ports, the temporary certificate, a small limit."""
    http_port, https_port = free_port(), free_port()
    data = settings({"web": {"rate_limit": {"per_second": 1, "burst": 5}}})
    # free ports for this test only (the model would want the firewall's table to open them)
    data["web"].update(http_port=http_port, https_port=https_port)
    return {**view.site_view(data, "app-01"), "address": "127.0.0.1", "cert": certs["cert"], "key": certs["key"]}


def test_tls_config_text(tmp, tls_site, static_dir):
    text = nginx_conf(tmp, "tls-text", tls_site, static_dir).read_text()
    assert f"listen 127.0.0.1:{tls_site['https_port']} ssl;" in text
    assert f"return 301 https://$host:{tls_site['https_port']}$request_uri;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text and "TLSv1.1" not in text and "SSLv3" not in text
    assert f"ssl_certificate {tls_site['cert']};" in text and f"ssl_certificate_key {tls_site['key']};" in text
    assert text.count('add_header Strict-Transport-Security "max-age=31536000" always;') == 2  # server, @unavailable
    assert "includeSubDomains" not in text and "preload" not in text
    assert "limit_req_zone $binary_remote_addr zone=site:10m rate=1r/s;" in text
    assert "limit_req zone=site burst=5 nodelay;" in text and "limit_req_status 429;" in text
    # the headers in every server and again where a location sets its own (add_header is not inherited then)
    assert text.count("add_header X-Frame-Options \"DENY\" always;") == 3


def test_tls_config_passes_nginx_t_and_serves_https(tmp, certs, tls_site, static_dir):
    conf = nginx_conf(tmp, "tls-run", tls_site, static_dir, upstream=f"127.0.0.1:{free_port()}")
    nginx_t(conf)
    context = ssl.create_default_context(cafile=certs["ca"])
    with Nginx(conf, [tls_site["http_port"], tls_site["https_port"]]):
        # plain HTTP: 301 to the same host and path over https, no HSTS there
        resp = get(tls_site["http_port"], "/cars?sort=price_asc&page=2")
        assert resp.status == 301
        assert resp.getheader("Location") == f"https://127.0.0.1:{tls_site['https_port']}/cars?sort=price_asc&page=2"
        assert resp.getheader("Strict-Transport-Security") is None
        assert security_headers_of(resp) == EXPECTED_HEADERS
        # https, verified with halite's CA: a static file, and gunicorn down (the 503 page)
        resp = get(tls_site["https_port"], "/static/style.css", context)
        assert resp.status == 200 and resp.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert security_headers_of(resp) == EXPECTED_HEADERS
        resp = get(tls_site["https_port"], "/", context)
        assert resp.status == 503 and resp.getheader("Retry-After") == "5"
        assert resp.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert security_headers_of(resp) == EXPECTED_HEADERS
        # TLS 1.2 is served (1.1 and older are not offered: ssl_protocols, test_tls_config_text; this
        # machine's OpenSSL refuses them on its own, so a TLS 1.1 client would prove nothing here)
        tls12 = ssl.create_default_context(cafile=certs["ca"])
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert get(tls_site["https_port"], "/static/style.css", tls12).status == 200
        # the request limit: 1/s with a burst of 5 from one address, then 429 at once
        time.sleep(6)  # the bucket drains
        codes = [get(tls_site["https_port"], "/static/style.css", context).status for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes, codes


# --------------------------------------------------------------------------
# nginx without TLS (tls.unsafe_plaintext: site)


def test_plain_site_keeps_http_and_the_security_headers(tmp, static_dir):
    port = free_port()
    data = settings(PLAIN)
    data["web"]["http_port"] = port
    site = {**view.site_view(data, "app-01"), "address": "127.0.0.1"}
    assert site["tls"] is False and site["redirect"] is None and site["hsts"] is None
    assert site["url"] == f"http://10.77.0.20:{port}/"
    conf = nginx_conf(tmp, "plain-run", site, static_dir)
    text = conf.read_text()
    assert " ssl" not in text and "return 301" not in text and "Strict-Transport-Security" not in text
    assert "limit_req zone=site burst=600 nodelay;" in text
    nginx_t(conf)
    with Nginx(conf, [port]):
        resp = get(port, "/static/style.css")
        assert resp.status == 200 and resp.getheader("Strict-Transport-Security") is None
        assert security_headers_of(resp) == EXPECTED_HEADERS


# --------------------------------------------------------------------------
# HAProxy's stats page


def stats_section(text: str) -> list[str]:
    body = text.split("\nlisten stats\n", 1)[1].split("\nlisten ", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_haproxy_stats_on_the_cluster_address_with_a_login(tmp):
    states = show(tmp, "app-01", "haproxy.config")
    assert arg(states, "haproxy-config-file", "show_changes") is False
    assert arg(states, "haproxy-config-file", "mode") == "0640"
    assert arg(states, "haproxy-config-file", "group") == "haproxy"
    hl = arg(states, "haproxy-config-file", "context")["hl"]
    password = hl["haproxy"]["stats_password"]
    assert password and len(password) >= 16  # generated per install (halite.generated)
    assert hl["host"]["haproxy_stats"] == {"bind": "10.77.1.20:7000", "auth": f"'halite:{password}'",
                                           "userlist_user": f"user 'halite' insecure-password '{password}'"}
    text = template(tmp, "haproxy/files/haproxy.cfg.jinja", hl=hl)
    lines = stats_section(text)
    assert "bind 10.77.1.20:7000" in lines and f"stats auth 'halite:{password}'" in lines
    # HAProxy's Prometheus endpoint behind the same login (a userlist of that one user)
    assert lines.index("http-request auth realm halite if { path /metrics } !{ http_auth(halite_stats) }") < \
        lines.index("http-request use-service prometheus-exporter if { path /metrics }")
    assert f"user 'halite' insecure-password '{password}'" in text.split("\nuserlist halite_stats\n", 1)[1]
    assert not [line for line in lines if line.startswith("bind *")]
    # a password of the pillar's own, any printable character: quoted for HAProxy
    data = settings({"haproxy": {"stats_password": "it's #1 ${X}"}})
    assert view.haproxy_stats(data, "app-01")["auth"] == "'halite:it'\\''s #1 ${X}'"


def test_stats_password_reaches_haproxy_hosts_only():
    data = config.load()
    assert "haproxy.stats_password" in view.secrets_for(["haproxy"], data)
    app = view.pillar_for("app-01", data)["halite"]
    assert app["haproxy"]["stats_password"]
    for host in ("db-01", "jump-01", "backup-01"):
        pillar = view.pillar_for(host, data)["halite"]
        assert "stats_password" not in pillar["haproxy"], host
    assert "stats_password" not in view.pillar_for("control", data)["halite"]["haproxy"]
    # the same value every run (kept on the control machine)
    assert view.pillar_for("app-01", data)["halite"]["haproxy"]["stats_password"] == app["haproxy"]["stats_password"]


def test_prometheus_scrapes_the_stats_page_with_its_login(tmp):
    jobs = {j["name"]: j for j in view.scrape_jobs(config.load())}
    assert jobs["haproxy"]["basic_auth"] == {"username": "halite",
                                             "password_file": view.MONITORING_PATHS["haproxy_stats_password"]}
    assert "basic_auth" not in jobs["node"]
    text = template(tmp, "monitoring/files/prometheus.yml.jinja", mon=view.monitoring(config.load()),
                    rules_file="/etc/prometheus/alerts.yml")
    scraped = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert scraped["haproxy"]["basic_auth"] == jobs["haproxy"]["basic_auth"]
    assert not re.search(r"password:", text)  # the password itself never in prometheus.yml


def test_session_cookie_is_secure_over_https_only(tmp):
    assert arg(show(tmp, "app-01", "web.config"), "web-site-env", "context")["secure_cookies"] is True
    assert arg(show(tmp, "app-01", "web.config", extra=PLAIN), "web-site-env", "context")["secure_cookies"] is False
