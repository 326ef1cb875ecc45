"""web/halite_web/cluster.py's Patroni client against a real local https server: the
status page verifies Patroni's certificate with the CA of PATRONI_CA_FILE (halite's)."""
from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest

from halite import pki
from halite_web import cluster, config

CLUSTER = {"members": [{"name": "db-01", "role": "leader"}], "scope": "halite"}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps(CLUSTER).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _ca(tmp_path, name):
    where = tmp_path / name
    where.mkdir(mode=0o700)
    ca = where / "ca-copy.crt"
    ca.write_text(pki.ensure_ca(where, name))
    cert, key = pki.host_cert(where, "db-01", ["db-01"], ["127.0.0.1"], days=30, renew_before_days=5)
    (where / "db.crt").write_text(cert)
    (where / "db.key").write_text(key)
    return str(ca), str(where / "db.crt"), str(where / "db.key")


@pytest.fixture
def patroni(tmp_path):
    """An https 'Patroni' with a certificate of CA ours; returns (URL, our CA, another CA)."""
    ours, cert, key = _ca(tmp_path, "ours")
    theirs, _, _ = _ca(tmp_path, "theirs")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ours, theirs
    server.shutdown()
    server.server_close()


def test_patroni_is_verified_with_the_ca_file(patroni):
    url, ours, theirs = patroni
    data, errors = cluster.fetch_patroni([url], 3, ca_file=ours)
    assert errors == [] and data["members"][0]["name"] == "db-01" and data["_url"] == url
    data, errors = cluster.fetch_patroni([url], 3, ca_file=theirs)
    assert data is None and "CERTIFICATE_VERIFY_FAILED" in errors[0]
    data, errors = cluster.fetch_patroni([url], 3, ca_file="/nonexistent/ca.crt")
    assert data is None and errors[0].startswith("Patroni CA file /nonexistent/ca.crt")


def test_the_ca_file_comes_from_site_env():
    cfg = config.load_config(environ={"HALITE_WEB_PATRONI_CA_FILE": "/etc/halite/tls/ca.crt", "HALITE_WEB_SECRET_KEY": "k"})
    assert cfg["PATRONI_CA_FILE"] == "/etc/halite/tls/ca.crt"
    assert config.load_config(environ={"HALITE_WEB_SECRET_KEY": "k"})["PATRONI_CA_FILE"] is None
