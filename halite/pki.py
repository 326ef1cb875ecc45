"""halite's own certificate authority, made once per install on the control machine.

Where the material lives: :func:`state_dir` gives one directory per topology,
``$HALITE_STATE_DIR/<topology>`` or else ``<repository>/.halite/<topology>``
(ignored by git), mode 0700. In it:

- ``ca.key`` and ``ca.crt``: the CA (EC P-256, ten years), made by
  :func:`ensure_ca` on first use. Supply your own CA by placing ``ca.crt`` and
  ``ca.key`` there before the first run;
- ``hosts/<host>.crt`` and ``hosts/<host>.key``: each host's certificate and
  key, issued by :func:`host_cert` and reused until its names change, the CA
  changes or it nears its end;
- ``secrets.yaml``: generated passwords (:mod:`halite.generated`).

The CA key never leaves the control machine: no public function here returns
it, and no pillar holds it. Each host receives, through its own pillar, the CA
certificate and only its own certificate and key.

Keys are written atomically: into a temporary file created with mode 0600 in
the same directory, then renamed, so no reader sees half a key and none is
ever readable by others, not even briefly. A lock on the directory keeps two
runs at once (salt-ssh renders pillars in parallel) from issuing two CAs.

Every problem is one :class:`PkiError` with one line naming the file or the
value and what is expected.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parent.parent

CA_DAYS = 3650
#: a new certificate starts a little in the past, for hosts whose clock lags
BACKDATE = timedelta(minutes=5)

_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TOPOLOGY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # the model's Name


class PkiError(ValueError):
    """A CA, a certificate or an argument that halite cannot use; the message names it."""


# --- the directory and its files -------------------------------------------

def state_dir(topology_name: str) -> Path:
    """The directory holding one install's generated material, created with mode 0700.

    ``$HALITE_STATE_DIR/<topology_name>`` if that variable is set, else
    ``<repository>/.halite/<topology_name>``. Directories created on the way
    get mode 0700 too; the last one is set to 0700 even if it existed.

    :param topology_name: the topology's name (letters, digits, ``_.-``).
    :returns: the directory's path.

    Example::

        >>> state_dir("lab")                       # doctest: +SKIP
        PosixPath('/home/me/halite/.halite/lab')
    """
    if not _TOPOLOGY_NAME.match(topology_name):
        raise PkiError(f"topology name {topology_name!r}: use letters, digits, '_', '.' and '-', "
                       "starting with a letter or digit")
    base = os.environ.get("HALITE_STATE_DIR")
    root = Path(base) if base else REPO / ".halite"
    return private_dir(root / topology_name)


def private_dir(path: Path) -> Path:
    """``path`` as a directory of mode 0700; missing parents are created 0700 as well.

    :param path: the directory.
    :returns: ``path``.
    """
    missing = []
    for p in [path, *path.parents]:
        if p.is_dir():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
        os.chmod(p, 0o700)  # mkdir's mode is filtered by the umask
    os.chmod(path, 0o700)
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` in one step: a 0600 temporary file beside it, then a rename.

    :param path: the file to (re)place; its directory must exist.
    :param data: the whole content.
    :param mode: the file's final mode (0600 for anything secret).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) while the block runs."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --- the CA ----------------------------------------------------------------

def ensure_ca(directory: Path, name: str) -> str:
    """The CA certificate of this install, made on first use.

    Makes ``ca.key`` (EC P-256, mode 0600) and ``ca.crt`` (self-signed,
    CN ``halite CA <name>``, CA:true with pathlen 0, ten years) in
    ``directory`` if neither exists; otherwise reuses them. Supply your own CA
    by placing ca.crt and ca.key in the directory (one certificate in
    ``ca.crt``, which hosts then trust as their root; an unencrypted key,
    RSA, EC or Ed25519). The key itself is never returned.

    :param directory: the install's directory (see :func:`state_dir`).
    :param name: the install's name, shown in the CA's common name.
    :returns: the CA certificate, PEM.
    :raises PkiError: only one of the two files exists, one does not parse,
        the key does not match the certificate, or the certificate is no CA.

    Example::

        >>> ensure_ca(state_dir("lab"), "lab").splitlines()[0]   # doctest: +SKIP
        '-----BEGIN CERTIFICATE-----'
    """
    cn = f"halite CA {name}"
    if not name or len(cn) > 64:
        raise PkiError(f"CA name {name!r}: give 1 to {64 - len('halite CA ')} characters")
    private_dir(directory)
    with locked(directory):
        key_path, crt_path = directory / "ca.key", directory / "ca.crt"
        if not key_path.exists() and not crt_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
            now = datetime.now(timezone.utc)
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(now + timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256())
            )
            write_atomic(key_path, _key_pem(key).encode())
            write_atomic(crt_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        cert, _ = _load_ca(directory)
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def _load_ca(directory: Path):
    """The CA's certificate and key from ``directory``, checked to belong together."""
    key_path, crt_path = directory / "ca.key", directory / "ca.crt"
    for path, other in ((key_path, crt_path), (crt_path, key_path)):
        if not path.exists():
            raise PkiError(f"{path}: missing" + (f" beside {other}; supply both or remove {other}"
                                                  if other.exists() else "; call ensure_ca first"))
    cert = _read_cert(crt_path)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    if not _same_key(key, cert):
        raise PkiError(f"{key_path}: does not match the certificate in {crt_path}")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(f"{crt_path}: not a CA certificate (basicConstraints CA:true is missing)")
    return cert, key


# --- host certificates -----------------------------------------------------

def host_cert(directory: Path, host: str, dns_names: list[str], ip_addresses: list[str],
              days: int = 825, renew_before_days: int = 30) -> tuple[str, str]:
    """A certificate and key for ``host``, issued by the CA in ``directory``.

    Stored as ``hosts/<host>.crt`` and ``hosts/<host>.key`` (0600) and reused,
    byte for byte, while it was issued by the current CA, names exactly the
    requested DNS names and addresses, and does not expire within
    ``renew_before_days``. Otherwise a new key and certificate are issued:
    CN ``host``, those names as subjectAltName, usable by a TLS server and a
    TLS client (pgBackRest's server checks its clients' certificates).

    :param directory: the install's directory, holding the CA (:func:`ensure_ca`).
    :param host: the host's name, a DNS label.
    :param dns_names: DNS names in the certificate.
    :param ip_addresses: IP addresses in the certificate.
    :param days: validity of a newly issued certificate.
    :param renew_before_days: issue a new one when fewer days than this remain.
    :returns: ``(certificate PEM, key PEM)``.
    :raises PkiError: a bad host name, DNS name or address, or an unusable CA.

    Example::

        >>> crt, key = host_cert(d, "db1", ["db1.example.net"], ["10.0.0.11"])  # doctest: +SKIP
        >>> common_name(crt)                                                    # doctest: +SKIP
        'db1'
    """
    if not _DNS_LABEL.match(host):
        raise PkiError(f"host name {host!r}: a DNS label is letters, digits and '-', "
                       "1-63 characters, not starting or ending with '-'")
    names = list(dict.fromkeys(dns_names))
    for dns in names:
        if len(dns) > 253 or not all(_DNS_LABEL.match(label) for label in dns.split(".")):
            raise PkiError(f"DNS name {dns!r} for {host}: use dot-separated labels of letters, digits and '-'")
    addresses = []
    for ip in ip_addresses:
        try:
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise PkiError(f"IP address {ip!r} for {host}: not an IPv4 or IPv6 address") from None
    addresses = list(dict.fromkeys(addresses))
    if not names and not addresses:
        raise PkiError(f"host {host}: give at least one DNS name or IP address for the certificate")
    if days < 1 or renew_before_days < 0:
        raise PkiError(f"host {host}: days must be at least 1 and renew_before_days at least 0")

    if not directory.is_dir():
        raise PkiError(f"{directory}: missing; call ensure_ca first")
    with locked(directory):
        ca_cert, ca_key = _load_ca(directory)
        hosts = private_dir(directory / "hosts")
        crt_path, key_path = hosts / f"{host}.crt", hosts / f"{host}.key"
        stored = _stored_pair(crt_path, key_path)
        if stored and _still_good(stored, ca_cert, host, names, addresses, renew_before_days):
            return stored[0], stored[1]

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        ca_ski = _subject_key_id(ca_cert)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]),
                critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, _digest_for(ca_key))
        )
        cert_pem, key_pem = cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)
        write_atomic(key_path, key_pem.encode())
        write_atomic(crt_path, cert_pem.encode())
        return cert_pem, key_pem


def _stored_pair(crt_path: Path, key_path: Path) -> tuple[str, str] | None:
    try:
        return crt_path.read_text(), key_path.read_text()
    except FileNotFoundError:
        return None


def _still_good(stored, ca_cert, host, names, addresses, renew_before_days) -> bool:
    """Whether a stored host pair may be handed out again unchanged."""
    cert_pem, key_pem = stored
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False  # ours to replace: unreadable, or from another CA
    return (_same_key(key, cert)
            and _cn(cert) == host
            and set(san.get_values_for_type(x509.DNSName)) == set(names)
            and set(san.get_values_for_type(x509.IPAddress)) == set(addresses)
            and days_left(cert_pem) > renew_before_days)


# --- reading certificates --------------------------------------------------

def expires(cert_pem: str) -> datetime:
    """When the certificate ends (its notAfter), as an aware UTC datetime.

    :param cert_pem: a certificate, PEM.

    Example::

        >>> expires(ensure_ca(d, "lab")).year - datetime.now().year    # doctest: +SKIP
        10
    """
    return _parse(cert_pem).not_valid_after_utc


def days_left(cert_pem: str, now: datetime | None = None) -> float:
    """Days until the certificate ends; negative once it has.

    :param cert_pem: a certificate, PEM.
    :param now: an aware datetime (default: the current time).

    Example::

        >>> round(days_left(host_cert(d, "db1", ["db1"], [])[0]))    # doctest: +SKIP
        825
    """
    now = now or datetime.now(timezone.utc)
    return (expires(cert_pem) - now).total_seconds() / 86400


def common_name(cert_pem: str) -> str:
    """The certificate's subject common name.

    :param cert_pem: a certificate, PEM.

    Example::

        >>> common_name(ensure_ca(d, "lab"))    # doctest: +SKIP
        'halite CA lab'
    """
    return _cn(_parse(cert_pem))


# --- helpers ---------------------------------------------------------------

def _parse(cert_pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate ({exc})") from None


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"{path}: not a PEM certificate ({exc})") from None


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise PkiError(f"certificate {cert.subject.rfc4514_string()!r} has no common name")
    return str(attrs[0].value)


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _same_key(key, cert: x509.Certificate) -> bool:
    def spki(public) -> bytes:
        return public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki(key.public_key()) == spki(cert.public_key())


def _subject_key_id(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The CA's own key identifier, or one computed from its key when a supplied CA has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def _digest_for(key):
    """SHA-256, except for Ed25519/Ed448 keys, which sign without a separate digest."""
    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
