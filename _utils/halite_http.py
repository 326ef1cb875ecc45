"""
HTTP plumbing shared by halite's execution modules (``patroni``,
``etcd_cluster``): settings from Salt's configuration, connection keywords,
and one JSON request with one error path.

salt-ssh ships ``_utils`` to the target with the modules; the modules reach
these functions as ``__utils__["halite_http.<name>"]``. Only the Python
standard library is used.

Every failure raises :class:`salt.exceptions.CommandExecutionError` naming
the service, the method, the URL, the HTTP status and the server's answer.
"""
from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.error
import urllib.request

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "halite_http"


def __virtual__():
    return __virtualname__


def setting(config_get, key: str, default):
    """A setting from Salt's configuration (``config.get``: minion options, grains, then pillar).

    ``config.get`` rather than ``pillar.get``: a function run directly by
    salt-ssh (``salt-ssh db-01 patroni.switchover``) gets no pillar on the
    target; halite's roster hands the same keys to the target as minion
    options (``minion_opts``), and state runs have them in pillar. An empty
    value counts as unset.
    """
    value = config_get(key, default)
    return default if value in (None, "") else value


def check_keywords(kwargs: dict, allowed) -> None:
    """Refuse keyword arguments that are neither Salt's own (``__pub_*``) nor in ``allowed``."""
    unknown = sorted(k for k in kwargs if not k.startswith("__") and k not in allowed)
    if unknown:
        raise SaltInvocationError(
            f"unknown keyword argument(s) {', '.join(unknown)}; "
            f"the connection keywords are {', '.join(allowed)}"
        )


def base_url(host: str, port, scheme: str = "http") -> str:
    """``scheme://host:port``, with an IPv6 address in brackets."""
    if scheme not in ("http", "https"):
        raise SaltInvocationError(f"scheme must be http or https, not {scheme!r}")
    host = str(host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{int(port)}"


def opener(ca_file=None, cert_file=None, key_file=None):
    """A URL opener that talks straight to the server (never through an ``http_proxy``
    from the environment).

    With ``ca_file``, https servers are verified against that CA alone (halite's CA:
    ``/etc/halite/tls/ca.crt``), names included; with ``cert_file`` and ``key_file`` the
    opener also shows that client certificate (etcd asks for one).

    :param ca_file: the CA certificate to trust, or None (plain http only).
    :param cert_file: the client certificate, or None.
    :param key_file: its key.
    :returns: a ``urllib.request.OpenerDirector``.
    :raises CommandExecutionError: a file that cannot be read or is not a certificate/key.

    CLI Example (from a module)::

        opener = __utils__["halite_http.opener"]("/etc/halite/tls/ca.crt")
    """
    handlers = [urllib.request.ProxyHandler({})]
    if ca_file:
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise CommandExecutionError(
                f"TLS files {ca_file}, {cert_file or '-'}, {key_file or '-'} cannot be used: {exc}") from None
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers)


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", errors="replace").strip()[:500]
    except Exception:  # pylint: disable=broad-except
        return ""


def request(http_opener, service: str, method: str, url: str, timeout: float, payload=None,
            headers=None, accept=(200,), expect_json=True, unreachable_hint="", status_hints=None):
    """Send one request and return the answer.

    :param http_opener: the caller's opener (tests replace its ``open``).
    :param service: what answers, for messages ("Patroni REST API", "etcd").
    :param method: HTTP method.
    :param url: full URL.
    :param timeout: seconds.
    :param payload: JSON-serialisable body, or None.
    :param headers: extra headers (e.g. Authorization).
    :param accept: HTTP statuses whose body is an answer, not an error (etcd's
        ``GET /health`` answers 503 with a JSON body when unhealthy).
    :param expect_json: parse the body as JSON (else return it as stripped text).
    :param unreachable_hint: added to the message when the server is unreachable.
    :param status_hints: {status: text} added to the message of that HTTP error.
    :returns: the parsed JSON body, or the body text.
    :raises CommandExecutionError: on any failure, naming service, method and URL.
    """
    all_headers = {"Accept": "application/json"}
    all_headers.update(headers or {})
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        all_headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    where = f"{service} {method} {url}"
    log.debug("%s", where)
    try:
        with http_opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        body = _error_body(exc)
        if exc.code not in accept:
            hint = (status_hints or {}).get(exc.code, "")
            raise CommandExecutionError(
                f"{where} answered HTTP {exc.code} {exc.reason}: {body or '(empty body)'}{hint}"
            ) from None
        raw = body.encode("utf-8")
    except urllib.error.URLError as exc:
        raise CommandExecutionError(f"{where} is unreachable: {exc.reason}{unreachable_hint}") from None
    except TimeoutError:
        raise CommandExecutionError(f"{where} did not answer within {timeout:g} seconds") from None
    except (OSError, http.client.HTTPException) as exc:
        raise CommandExecutionError(f"{where} failed: {exc!r}") from None
    text = raw.decode("utf-8", errors="replace")
    if not expect_json:
        return text.strip()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandExecutionError(f"{where} returned a body that is not JSON ({exc}): {text[:200]!r}") from None
