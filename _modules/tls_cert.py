"""
What a host's certificates say about themselves: their end date and names,
read with ``openssl x509`` (no Python library needed on the target).

halite lays each host's certificate from its own CA down at
``/etc/halite/tls/host.crt`` (``salt/tls``); the state ``tls_cert.fresh``
fails an apply when one is about to expire, and ``orch.rotate_certs`` renews
them.

Every failure raises :class:`salt.exceptions.CommandExecutionError` naming the
file and what openssl said.
"""
from __future__ import annotations

import datetime as _dt
import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "tls_cert"

#: openssl's date format in ``-enddate`` (always GMT).
_OPENSSL_DATE = "%b %d %H:%M:%S %Y GMT"


def __virtual__():
    return __virtualname__


def _openssl(path: str, *args: str) -> str:
    if not os.path.isfile(path):
        raise CommandExecutionError(f"{path}: no such certificate file")
    res = __salt__["cmd.run_all"](["openssl", "x509", "-noout", "-in", path, *args],
                                  python_shell=False, ignore_retcode=True)
    if res["retcode"] != 0:
        raise CommandExecutionError(f"openssl x509 {' '.join(args)} -in {path} failed: "
                                    f"{(res.get('stderr') or res.get('stdout') or '').strip()[-300:]}")
    return res["stdout"].strip()


def info(path="/etc/halite/tls/host.crt", now=None) -> dict:
    """The certificate's subject, issuer, end date and days left.

    :param path: a PEM certificate.
    :param now: the time to count from (tests); default now (UTC).
    :returns: ``{"path", "subject", "issuer", "not_after" (ISO 8601), "days_left" (float)}``.
    :raises CommandExecutionError: a missing or unreadable certificate.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 tls_cert.info
        salt-ssh db-01 tls_cert.info /etc/pgbackrest/tls/db-01.crt
    """
    out = _openssl(path, "-subject", "-issuer", "-enddate", "-nameopt", "RFC2253")
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    try:
        end = _dt.datetime.strptime(fields["notAfter"], _OPENSSL_DATE).replace(tzinfo=_dt.timezone.utc)
    except (KeyError, ValueError):
        raise CommandExecutionError(f"{path}: openssl printed no end date I can read: {out[-300:]!r}") from None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return {"path": path, "subject": fields.get("subject", ""), "issuer": fields.get("issuer", ""),
            "not_after": end.isoformat(), "days_left": round((end - now).total_seconds() / 86400, 2)}
