"""
A gate on certificates: each one has at least ``min_days`` left.

It only asks the ``tls_cert`` execution module and never changes anything:
renewing is ``orch.rotate_certs`` (new certificates from halite's CA on the
control machine, laid down one host at a time).

.. code-block:: yaml

    halite-tls-cert-fresh:
      cert_health.fresh:
        - names:
          - /etc/halite/tls/host.crt
        - min_days: 30
"""
from __future__ import annotations

from salt.exceptions import CommandExecutionError

__virtualname__ = "cert_health"


def __virtual__():
    if "tls_cert.info" in __salt__:
        return __virtualname__
    return (False, "cert_health needs the tls_cert execution module (_modules/tls_cert.py)")


def fresh(name, min_days=30):
    """Pass when the certificate ``name`` ends more than ``min_days`` from now.

    :param name: the certificate's path.
    :param min_days: the fewest days left that pass (``tls.renew_before_days``).
    :returns: a state result with no changes; ``result`` False when it is too
        close to its end (or gone), saying how many days are left and how to renew.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        seen = __salt__["tls_cert.info"](name)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    if seen["days_left"] < min_days:
        ret.update(result=False, comment=(
            f"{name} ({seen['subject']}) ends {seen['not_after']}: {seen['days_left']:g} days left, fewer than "
            f"{min_days}; renew with `salt-run state.orchestrate orch.rotate_certs`"))
        return ret
    ret["comment"] = f"{name} ({seen['subject']}) ends {seen['not_after']}: {seen['days_left']:g} days left"
    return ret
