"""_utils/halite_http.py against a real local TLS server: certificates from halite.pki
(a CA and a host certificate in tmp_path), served by http.server + ssl in a thread on
127.0.0.1. The opener verifies the server against halite's CA, refuses a server of
another CA, and shows a client certificate to a server that asks for one (as etcd does)."""
from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest
from salt.exceptions import CommandExecutionError

import halite_http
from halite import pki


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        peer = self.connection.getpeercert()
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        body = json.dumps({"path": self.path, "client": subject.get("commonName")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _issue(directory, host):
    """Write a CA and ``host``'s certificate/key under ``directory``; return their paths."""
    directory.mkdir(mode=0o700)
    ca = pki.ensure_ca(directory, f"test-{directory.name}")
    cert, key = pki.host_cert(directory, host, [host, "localhost"], ["127.0.0.1"], days=30, renew_before_days=5)
    paths = {"ca": directory / "ca-copy.crt", "cert": directory / f"{host}-copy.crt", "key": directory / f"{host}-copy.key"}
    paths["ca"].write_text(ca)
    paths["cert"].write_text(cert)
    paths["key"].write_text(key)
    paths["key"].chmod(0o600)
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def pki_files(tmp_path):
    return {"ours": _issue(tmp_path / "ours", "db-01"), "theirs": _issue(tmp_path / "theirs", "db-01")}


def _serve(files, require_client_cert=False):
    """An https server on 127.0.0.1 with ``files``' certificate; returns (server, base URL)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files["cert"], files["key"])
    if require_client_cert:
        ctx.load_verify_locations(files["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, halite_http.base_url("127.0.0.1", server.server_address[1], "https")


@pytest.fixture
def serve():
    servers = []

    def start(files, require_client_cert=False):
        server, url = _serve(files, require_client_cert)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_server_of_halites_ca_is_verified(pki_files, serve):
    url = serve(pki_files["ours"])
    opener = halite_http.opener(pki_files["ours"]["ca"])
    answer = halite_http.request(opener, "test", "GET", url + "/cluster", 5)
    assert answer == {"path": "/cluster", "client": None}


def test_a_server_of_another_ca_is_refused(pki_files, serve):
    url = serve(pki_files["theirs"])
    opener = halite_http.opener(pki_files["ours"]["ca"])
    with pytest.raises(CommandExecutionError, match=r"test GET https://127.0.0.1:\d+/cluster is unreachable.*CERTIFICATE_VERIFY_FAILED"):
        halite_http.request(opener, "test", "GET", url + "/cluster", 5)


def test_a_server_that_asks_for_a_client_certificate_gets_ours(pki_files, serve):
    ours = pki_files["ours"]
    url = serve(ours, require_client_cert=True)
    opener = halite_http.opener(ours["ca"], ours["cert"], ours["key"])
    assert halite_http.request(opener, "etcd", "GET", url + "/health", 5) == {"path": "/health", "client": "db-01"}
    # without one, the server (etcd with client-cert-auth) turns the connection down
    with pytest.raises(CommandExecutionError, match=r"etcd GET https://127.0.0.1:\d+/health (is unreachable|failed)"):
        halite_http.request(halite_http.opener(ours["ca"]), "etcd", "GET", url + "/health", 5)


def test_unusable_tls_files_are_one_error(tmp_path):
    with pytest.raises(CommandExecutionError, match="TLS files .*missing.crt.* cannot be used"):
        halite_http.opener(str(tmp_path / "missing.crt"))
    assert halite_http.base_url("::1", 2379, "https") == "https://[::1]:2379"
