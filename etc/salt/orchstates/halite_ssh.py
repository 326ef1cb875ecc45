"""
A step for orchestrations (``salt-run state.orchestrate``): run an execution
function on hosts through salt-ssh and keep what it returns, or its own error.

Salt's ``salt.function`` with ``ssh: True`` loses a function's error: when the
function raises on a host, salt-ssh's answer for that host has no ``return``
and the step ends in ``KeyError: 'ret'`` with a traceback, the function's
message nowhere. This state makes the same call (``saltutil.cmd`` with
``ssh=True``) and reports, per host, either the return value (under
``changes: ret: HOST``, as ``salt.function`` does) or the function's message.

It runs on the control machine only (``states_dirs`` in etc/salt/master), not
on hosts.

.. code-block:: yaml

    restore-drill:
      halite_ssh.function:
        - name: pgbackrest.drill
        - tgt: backup-01
        - kwarg:
            stanza: halite
"""
from __future__ import annotations


def __virtual__():
    return "halite_ssh"


def _announce(tag_data: dict) -> None:
    """The ``salt/run/<jid>/args`` event salt.function fires as a step starts (``halite orch`` prints it)."""
    import salt.utils.event

    try:
        salt.utils.event.fire_args(__opts__, __orchestration_jid__, tag_data, "run")  # pylint: disable=undefined-variable
    except NameError:  # not inside an orchestration
        pass


def _error_text(data) -> str:
    """The function's own message out of salt-ssh's answer for one host."""
    if isinstance(data, dict):
        for key in ("stderr", "return", "ret", "_error"):
            value = data.get(key)
            if isinstance(value, dict):
                inner = _error_text(value)
                if inner:
                    return inner
            elif value:
                text = str(value).strip()
                lines = [ln for ln in text.splitlines() if ln.strip()]
                for line in reversed(lines):
                    if line.startswith("Error running"):
                        return line.split(": ", 1)[1] if ": " in line else line
                return lines[-1] if lines else text
    return str(data)


def _failed(data) -> bool:
    if not isinstance(data, dict):
        return True
    if data.get("retcode"):
        return True
    if "return" not in data and "ret" not in data:
        return True
    inner = data.get("return", data.get("ret"))
    return isinstance(inner, dict) and bool(inner.get("retcode")) and "stderr" in inner


def function(name, tgt, tgt_type="glob", arg=None, kwarg=None, timeout=None, wipe=False):
    """Run execution function ``name`` on ``tgt`` through salt-ssh.

    :param name: the function, e.g. ``pgbackrest.drill``.
    :param tgt: target (a host, or a comma-separated list with ``tgt_type: list``).
    :param arg: positional arguments.
    :param kwarg: keyword arguments.
    :param wipe: remove salt-ssh's thin directory from each host afterwards (``ssh_wipe``):
        it keeps the last state run's pillar, secrets included, in its state tarball.
    :returns: a state return: ``changes: {ret: {host: return}}``; on failure
        ``result: False`` and, for each failed host, the function's message.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if __opts__.get("test"):
        ret["result"] = None
        ret["comment"] = f"{name} would run on {tgt}"
        return ret
    kw = {"arg": list(arg or []), "kwarg": dict(kwarg or {}), "tgt_type": tgt_type, "ssh": True}
    _announce({"type": "function", "tgt": tgt, "name": name, "args": kw})
    if timeout:
        kw["timeout"] = timeout
    if wipe:
        kw["ssh_wipe"] = True
    try:
        out = __salt__["saltutil.cmd"](tgt, name, **kw)
    except Exception as exc:  # pylint: disable=broad-except
        ret["result"] = False
        ret["comment"] = f"{name} on {tgt}: {exc}"
        return ret
    results, failures = {}, []
    for host, data in sorted((out or {}).items()):
        if _failed(data):
            message = _error_text(data)
            results[host] = {"error": message}
            failures.append(f"{host}: {message}")
        else:
            results[host] = data.get("return", data.get("ret"))
    ret["changes"] = {"ret": results} if results else {}
    if not out:
        ret["result"] = False
        ret["comment"] = f"{name}: no host of {tgt} answered"
    elif failures:
        ret["result"] = False
        ret["comment"] = f"{name} failed on " + "; ".join(failures)
    else:
        ret["comment"] = f"{name} ran on {', '.join(results)}"
    return ret
