"""halite.pki: the CA and host certificates, checked with real cryptography,
OpenSSL's own ``verify`` and a real TLS handshake with client certificates."""
from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from halite import pki
from halite.pki import PkiError

OPENSSL = shutil.which("openssl")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture
def ca_dir(tmp_path) -> Path:
    directory = tmp_path / "state" / "test"
    pki.ensure_ca(directory, "test")
    return directory


def issue(directory: Path, host: str = "db1", **kw) -> tuple[str, str]:
    kw.setdefault("dns_names", [f"{host}.test", host])
    kw.setdefault("ip_addresses", ["127.0.0.1", "::1"])
    return pki.host_cert(directory, host, **kw)


# --- the state directory ---------------------------------------------------

def test_state_dir_from_the_environment_is_created_0700_with_its_parents(tmp_path, monkeypatch, open_umask):
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path / "a" / "b"))
    directory = pki.state_dir("lab")
    assert directory == tmp_path / "a" / "b" / "lab"
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", directory)] == [0o700] * 3
    assert pki.state_dir("lab") == directory


def test_state_dir_defaults_to_dot_halite_in_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("HALITE_STATE_DIR", raising=False)
    monkeypatch.setattr(pki, "REPO", tmp_path)
    assert pki.state_dir("prod") == tmp_path / ".halite" / "prod"
    assert mode(tmp_path / ".halite") == mode(tmp_path / ".halite" / "prod") == 0o700


def test_dot_halite_is_ignored_by_git():
    assert ".halite/" in (pki.REPO / ".gitignore").read_text().splitlines()


def test_an_existing_state_dir_is_tightened_to_0700(tmp_path, monkeypatch):
    (tmp_path / "lab").mkdir(mode=0o755)
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path))
    assert mode(pki.state_dir("lab")) == 0o700


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden"])
def test_a_topology_name_that_is_no_plain_name_is_refused(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path))
    with pytest.raises(PkiError, match="topology name"):
        pki.state_dir(name)


# --- the CA ----------------------------------------------------------------

def test_the_ca_is_a_self_signed_p256_ca_for_ten_years(ca_dir):
    pem = (ca_dir / "ca.crt").read_text()
    cert = load(pem)
    assert pki.common_name(pem) == "halite CA test"
    assert cert.issuer == cert.subject
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ext(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == \
        x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert 3649 < pki.days_left(pem) < 3651
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                             ec.ECDSA(cert.signature_hash_algorithm))


def test_the_ca_key_is_0600_and_the_directory_0700(tmp_path, open_umask):
    directory = tmp_path / "new" / "lab"
    pki.ensure_ca(directory, "lab")
    assert mode(directory / "ca.key") == 0o600
    assert mode(directory) == mode(tmp_path / "new") == 0o700
    assert not [p for p in directory.iterdir() if p.name.startswith(".ca.")]  # no temporary left


def test_no_key_is_ever_readable_by_others_while_it_is_written(tmp_path, open_umask, fsync_modes):
    seen = fsync_modes
    pki.ensure_ca(tmp_path, "lab")
    issue(tmp_path)
    assert len(seen) == 4 and set(seen) == {0o600}


def test_ensure_ca_reuses_the_ca_it_made(ca_dir):
    before = {p.name: p.read_bytes() for p in ca_dir.glob("ca.*")}
    assert pki.ensure_ca(ca_dir, "test") == before["ca.crt"].decode()
    assert pki.ensure_ca(ca_dir, "other name") == before["ca.crt"].decode()
    assert {p.name: p.read_bytes() for p in ca_dir.glob("ca.*")} == before


def test_a_lone_ca_key_is_refused_naming_the_missing_certificate(ca_dir):
    (ca_dir / "ca.crt").unlink()
    with pytest.raises(PkiError, match=r"ca\.crt: missing beside .*ca\.key"):
        pki.ensure_ca(ca_dir, "test")
    with pytest.raises(PkiError, match=r"ca\.crt"):
        issue(ca_dir)


def test_a_lone_ca_certificate_is_refused_naming_the_missing_key(ca_dir):
    (ca_dir / "ca.key").unlink()
    with pytest.raises(PkiError, match=r"ca\.key: missing"):
        pki.ensure_ca(ca_dir, "test")


def test_a_ca_key_that_does_not_match_the_certificate_is_refused(ca_dir, tmp_path):
    other = tmp_path / "other"
    pki.ensure_ca(other, "test")
    (ca_dir / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(PkiError, match=r"ca\.key: does not match the certificate"):
        pki.ensure_ca(ca_dir, "test")


def test_a_ca_file_that_does_not_parse_is_refused_naming_it(ca_dir):
    (ca_dir / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(PkiError, match=r"ca\.crt: not a PEM certificate"):
        pki.ensure_ca(ca_dir, "test")


def test_host_cert_before_any_ca_is_refused(tmp_path):
    with pytest.raises(PkiError, match="call ensure_ca first"):
        issue(tmp_path / "nothing")


def own_ca(directory: Path, key, basic_ca: bool = True) -> x509.Certificate:
    """A CA made elsewhere (no SubjectKeyIdentifier), placed as ca.crt and ca.key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Site Root")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=basic_ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    return cert


def test_a_ca_supplied_by_the_user_is_used_as_it_is(tmp_path):
    directory = tmp_path / "own"
    cert = own_ca(directory, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert load(pki.ensure_ca(directory, "ignored")) == cert
    host = load(issue(directory)[0])
    host.verify_directly_issued_by(cert)
    assert ext(host, x509.AuthorityKeyIdentifier).value.key_identifier == \
        x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    if OPENSSL:
        openssl_verify(directory, directory / "hosts" / "db1.crt", "sslserver")


def test_a_supplied_certificate_that_is_no_ca_is_refused(tmp_path):
    directory = tmp_path / "own"
    own_ca(directory, ec.generate_private_key(ec.SECP256R1()), basic_ca=False)
    with pytest.raises(PkiError, match=r"ca\.crt: not a CA certificate"):
        pki.ensure_ca(directory, "x")


@pytest.mark.parametrize("name", ["", "x" * 60])
def test_a_ca_name_that_does_not_fit_a_common_name_is_refused(name, tmp_path):
    with pytest.raises(PkiError, match="CA name"):
        pki.ensure_ca(tmp_path, name)


# --- host certificates -----------------------------------------------------

def openssl_verify(directory: Path, crt: Path, purpose: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", str(directory / "ca.crt"),
                           "-purpose", purpose, str(crt)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not OPENSSL, reason="no openssl")
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_verifies_the_host_certificate_for_server_and_client(ca_dir, tmp_path, purpose):
    issue(ca_dir)
    crt = ca_dir / "hosts" / "db1.crt"
    done = openssl_verify(ca_dir, crt, purpose)
    assert done.returncode == 0 and done.stdout.strip() == f"{crt}: OK", done.stdout + done.stderr
    other = tmp_path / "other"
    pki.ensure_ca(other, "test")  # same name, another key: must not verify
    assert openssl_verify(other, crt, purpose).returncode != 0


def test_the_host_certificate_is_signed_by_the_ca_key(ca_dir, tmp_path):
    cert = load(issue(ca_dir)[0])
    ca = load((ca_dir / "ca.crt").read_text())
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                           ec.ECDSA(cert.signature_hash_algorithm))
    other = load(pki.ensure_ca(tmp_path / "other", "test"))
    with pytest.raises(InvalidSignature):
        other.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                  ec.ECDSA(cert.signature_hash_algorithm))


def test_the_host_certificate_names_exactly_what_was_asked(ca_dir):
    crt, key = issue(ca_dir, dns_names=["db1.test", "db1"], ip_addresses=["10.0.0.11", "fd00::11"])
    cert = load(crt)
    assert pki.common_name(crt) == "db1"
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["db1.test", "db1"]
    assert san.get_values_for_type(x509.IPAddress) == [ip_address("10.0.0.11"), ip_address("fd00::11")]
    assert set(ext(cert, x509.ExtendedKeyUsage).value) == \
        {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert not ext(cert, x509.BasicConstraints).value.ca
    ca = load((ca_dir / "ca.crt").read_text())
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(ca, x509.SubjectKeyIdentifier).value.digest
    private = serialization.load_pem_private_key(key.encode(), password=None)
    assert private.public_key() == cert.public_key()
    assert 824 < pki.days_left(crt) < 826


def test_host_files_are_stored_0600_in_a_0700_directory(ca_dir, open_umask):
    crt, key = issue(ca_dir)
    assert (ca_dir / "hosts" / "db1.crt").read_text() == crt
    assert (ca_dir / "hosts" / "db1.key").read_text() == key
    assert mode(ca_dir / "hosts" / "db1.key") == 0o600
    assert mode(ca_dir / "hosts") == 0o700


def test_a_second_call_returns_the_same_bytes(ca_dir):
    first = issue(ca_dir)
    assert issue(ca_dir) == first
    # the same names in another order, with a duplicate, are the same set
    assert issue(ca_dir, dns_names=["db1", "db1.test", "db1"], ip_addresses=["::1", "127.0.0.1"]) == first


def test_serials_are_random(ca_dir):
    serials = {load(issue(ca_dir, host=f"h{i}")[0]).serial_number for i in range(5)}
    assert len(serials) == 5 and all(s.bit_length() > 64 for s in serials)


@pytest.mark.parametrize("change", [
    {"dns_names": ["db1.test"]},
    {"dns_names": ["db1.test", "db1", "db1.example.net"]},
    {"ip_addresses": ["127.0.0.1"]},
    {"ip_addresses": ["127.0.0.1", "::1", "10.0.0.11"]},
])
def test_changed_names_give_a_new_certificate_and_key(ca_dir, change):
    crt, key = issue(ca_dir)
    new_crt, new_key = issue(ca_dir, **change)
    assert new_crt != crt and new_key != key
    san = ext(load(new_crt), x509.SubjectAlternativeName).value
    if "dns_names" in change:
        assert set(san.get_values_for_type(x509.DNSName)) == set(change["dns_names"])
    else:
        assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == set(change["ip_addresses"])
    assert issue(ca_dir, **change) == (new_crt, new_key)


def test_a_certificate_inside_the_renewal_window_is_renewed(ca_dir):
    short, _ = issue(ca_dir, days=10, renew_before_days=30)
    assert 9 < pki.days_left(short) < 11
    renewed, _ = issue(ca_dir, days=825, renew_before_days=30)
    assert renewed != short and pki.days_left(renewed) > 800
    assert issue(ca_dir) == (renewed, (ca_dir / "hosts" / "db1.key").read_text())


def test_a_replaced_ca_reissues_the_host_certificate(ca_dir):
    crt, _ = issue(ca_dir)
    for path in ca_dir.glob("ca.*"):
        path.unlink()
    new_ca = load(pki.ensure_ca(ca_dir, "test"))
    assert new_ca.subject == load(crt).issuer  # same name: only the signature tells them apart
    new_crt, _ = issue(ca_dir)
    assert new_crt != crt
    load(new_crt).verify_directly_issued_by(new_ca)


def test_a_damaged_stored_host_file_is_replaced(ca_dir):
    crt, _ = issue(ca_dir)
    (ca_dir / "hosts" / "db1.key").write_text("garbage\n")
    new_crt, new_key = issue(ca_dir)
    assert new_crt != crt and new_key.startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("host", ["db_1", "-db1", "db1.example.net", "", "a" * 64, "../x"])
def test_a_bad_host_name_is_refused_naming_it(ca_dir, host):
    with pytest.raises(PkiError, match=re.escape(f"host name {host!r}")):
        pki.host_cert(ca_dir, host, ["db1"], [])


@pytest.mark.parametrize("ip", ["10.0.0.256", "db1", "10.0.0.1/24", ""])
def test_a_bad_ip_address_is_refused_naming_it(ca_dir, ip):
    with pytest.raises(PkiError, match=re.escape(f"IP address {ip!r}")):
        pki.host_cert(ca_dir, "db1", ["db1"], ["127.0.0.1", ip])


@pytest.mark.parametrize("dns", ["db1..test", "db_1.test", "*.test", ""])
def test_a_bad_dns_name_is_refused_naming_it(ca_dir, dns):
    with pytest.raises(PkiError, match="DNS name"):
        pki.host_cert(ca_dir, "db1", [dns], [])


def test_a_certificate_without_any_name_is_refused(ca_dir):
    with pytest.raises(PkiError, match="at least one DNS name or IP address"):
        pki.host_cert(ca_dir, "db1", [], [])


def test_no_public_function_returns_the_ca_key(ca_dir):
    ca_key = (ca_dir / "ca.key").read_text()
    crt, key = issue(ca_dir)
    returned = [pki.ensure_ca(ca_dir, "test"), crt, key, pki.common_name(crt)]
    assert all(ca_key.strip() not in text for text in returned)
    assert "PRIVATE KEY" not in pki.ensure_ca(ca_dir, "test")
    ca_private = serialization.load_pem_private_key(ca_key.encode(), password=None)
    host_private = serialization.load_pem_private_key(key.encode(), password=None)
    assert host_private.private_numbers() != ca_private.private_numbers()


# --- reading certificates --------------------------------------------------

def test_expires_and_days_left(ca_dir):
    crt, _ = issue(ca_dir, days=100)
    end = pki.expires(crt)
    assert end.tzinfo is not None and end.utcoffset() == timedelta(0)
    assert end == load(crt).not_valid_after_utc
    assert pki.days_left(crt, now=end - timedelta(days=2, hours=12)) == pytest.approx(2.5)
    assert pki.days_left(crt, now=end + timedelta(days=1)) == pytest.approx(-1)


def test_reading_something_that_is_no_certificate_is_a_pki_error():
    with pytest.raises(PkiError, match="not a PEM certificate"):
        pki.expires("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert issubclass(PkiError, ValueError)


# --- a real TLS handshake with client certificates -------------------------

def handshake(server: tuple[Path, Path, str], client: tuple[Path, Path, str], server_hostname: str) -> dict:
    """One TLS connection on 127.0.0.1; the server requires a client certificate.

    ``server`` and ``client`` are ``(cert file, key file, CA PEM to trust)``.
    Returns what each side saw: the peer's common name or the error.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server[0], server[1])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=server[2])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its name
    client_ctx.load_cert_chain(client[0], client[1])
    client_ctx.load_verify_locations(cadata=client[2])

    seen: dict = {}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["server_peer"] = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            seen["server_error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            seen["client_peer"] = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
            seen["data"] = tls.recv(2)  # TLS 1.3: a refused client certificate shows here
    except (OSError, ssl.SSLError) as exc:
        seen["client_error"] = exc
    finally:
        thread.join(5)
        listener.close()
    assert not thread.is_alive()
    return seen


@pytest.mark.parametrize("server_hostname", ["db1.test", "127.0.0.1"])
def test_two_hosts_of_one_ca_authenticate_each_other_over_tls(ca_dir, server_hostname):
    ca = pki.ensure_ca(ca_dir, "test")
    issue(ca_dir, "db1")
    issue(ca_dir, "app1", dns_names=["app1.test"], ip_addresses=["10.0.0.21"])
    hosts = ca_dir / "hosts"
    seen = handshake((hosts / "db1.crt", hosts / "db1.key", ca),
                     (hosts / "app1.crt", hosts / "app1.key", ca), server_hostname)
    assert seen == {"server_peer": "app1", "client_peer": "db1", "data": b"ok"}


def test_a_client_certificate_from_another_ca_is_refused(ca_dir, tmp_path):
    ca = pki.ensure_ca(ca_dir, "test")
    issue(ca_dir, "db1")
    other = tmp_path / "other"
    pki.ensure_ca(other, "test")  # the same CA name, another key
    pki.host_cert(other, "app1", ["app1.test"], [])
    seen = handshake((ca_dir / "hosts" / "db1.crt", ca_dir / "hosts" / "db1.key", ca),
                     (other / "hosts" / "app1.crt", other / "hosts" / "app1.key", ca), "db1.test")
    assert "server_peer" not in seen and seen.get("data") != b"ok"
    assert isinstance(seen["server_error"], ssl.SSLError)
    assert "certificate verify failed" in str(seen["server_error"])


def test_a_server_certificate_from_another_ca_is_refused_by_the_client(ca_dir, tmp_path):
    ca = pki.ensure_ca(ca_dir, "test")
    issue(ca_dir, "app1", dns_names=["app1.test"], ip_addresses=[])
    other = tmp_path / "other"
    pki.ensure_ca(other, "test")
    pki.host_cert(other, "db1", ["db1.test"], [])
    seen = handshake((other / "hosts" / "db1.crt", other / "hosts" / "db1.key", ca),
                     (ca_dir / "hosts" / "app1.crt", ca_dir / "hosts" / "app1.key", ca), "db1.test")
    assert isinstance(seen["client_error"], ssl.SSLCertVerificationError)
    assert "client_peer" not in seen
