"""First contact with a site's hosts: ``halite hosts trust``.

salt-ssh checks every host key (``StrictHostKeyChecking=yes``) against the
known_hosts file the topology names (:func:`halite.roster.access`), so before
the first run that file must hold each host's key. Only the jump host is
reachable from the control machine; the others are scanned *from* the jump
host, over an SSH session whose key was checked first:

1. the jump host's keys are fetched (``ssh-keyscan``) and their fingerprints
   shown; once confirmed they are recorded;
2. ``ssh-keyscan`` runs on the jump host for every other host's address, over
   SSH as the login user (the jump host's key now checked), and the
   fingerprints are shown and confirmed the same way.

Compare the fingerprints with what the provider's console or the hosts
themselves print (``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub``). A key
that differs from one already recorded is never replaced: that is what a
man in the middle looks like; remove the old line by hand if the host was
really rebuilt.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

from halite import config, roster, view

#: The key types asked for, strongest first (every OpenSSH since 6.5 has ed25519).
KEY_TYPES = "ed25519,ecdsa,rsa"


def _names(topo: dict, host: str) -> list[str]:
    """The names a host is reached by (ssh looks its key up by the address it connects to)."""
    return [host, *topo["hosts"][host]["addresses"].values()]


def fingerprint(line: str) -> str:
    """``SHA256:... (ED25519)`` of one ``name keytype key`` line (``ssh-keygen -lf``)."""
    res = subprocess.run(["ssh-keygen", "-lf", "-"], input=line + "\n", capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"ssh-keygen cannot read the key {line.split()[1:2]}: {res.stderr.strip()}")
    words = res.stdout.split()  # bits, SHA256:..., the name, (TYPE)
    return f"{words[1]} {words[-1]}"


def parse_scan(text: str) -> dict[str, list[tuple[str, str]]]:
    """``ssh-keyscan``'s output as ``{address: [(keytype, key), ...]}`` (comments skipped)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            out.setdefault(parts[0], []).append((parts[1], parts[2]))
    return out


def read_known(path: Path) -> dict[str, set[tuple[str, str]]]:
    """A known_hosts file as ``{name: {(keytype, key)}}`` (hashed names are kept as they are)."""
    out: dict[str, set[tuple[str, str]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                for name in parts[0].split(","):
                    out.setdefault(name, set()).add((parts[1], parts[2]))
    return out


def _check_and_lines(topo: dict, host: str, keys: list[tuple[str, str]],
                     known: dict[str, set[tuple[str, str]]]) -> tuple[list[str], bool]:
    """The known_hosts lines for ``host``'s keys, and whether all of them are recorded already.
    A recorded name with other keys of the same type refuses (the key changed)."""
    names = _names(topo, host)
    for keytype, key in keys:
        for name in names:
            same_type = {k for t, k in known.get(name, set()) if t == keytype}
            if same_type and key not in same_type:
                raise RuntimeError(
                    f"{host} ({name}) now shows another {keytype} key than the one recorded: "
                    f"{fingerprint(f'{name} {keytype} {key}')}. If the host was rebuilt, remove its lines "
                    "from the known_hosts file and run again; if not, stop: someone may be in the middle")
    recorded = all((t, k) in known.get(n, set()) for t, k in keys for n in names)
    return [f"{','.join(names)} {t} {k}" for t, k in keys], recorded


def trust(topo: dict | None = None, confirm: Callable[[str], bool] | None = None,
          out=sys.stdout) -> Path:
    """Record every host's keys in the topology's known_hosts file, each batch shown and confirmed.

    :param topo: the topology (default: the checked one).
    :param confirm: asked with the fingerprints shown; False stops with nothing recorded for that
        batch (default: ask on the terminal).
    :returns: the known_hosts file.
    :raises RuntimeError: a host cannot be scanned, a recorded key changed, or the user said no.

    CLI Example::

        halite hosts trust          # shows fingerprints, asks before recording them
        halite hosts trust --yes    # records without asking (the lab)
    """
    topo = config.load_topology() if topo is None else topo
    acc = roster.access(topo)
    path = Path(acc["known_hosts"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    confirm = confirm or _ask
    jump, jump_addr = view.jump_address(topo)

    def record(batch: dict[str, list[tuple[str, str]]], where: str) -> None:
        known = read_known(path)
        lines, new = [], []
        for host, keys in batch.items():
            host_lines, recorded = _check_and_lines(topo, host, keys, known)
            if not recorded:
                lines += host_lines
                new += [f"  {host:<12} {fingerprint(line)}" for line in host_lines]
        if not new:
            print(f"halite hosts trust: {', '.join(batch)}: already recorded in {path}", file=out)
            return
        text = f"Host keys {where}:\n" + "\n".join(new)
        print(text, file=out)
        if not confirm("Are these the hosts' keys (compare with the provider's console)?"):
            raise RuntimeError(f"nothing recorded for {', '.join(batch)}: the keys were not confirmed")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        path.chmod(0o600)
        print(f"halite hosts trust: recorded {len(lines)} key(s) in {path}", file=out)

    # 1. the jump host, from the control machine
    res = subprocess.run(["ssh-keyscan", "-T", "10", "-t", KEY_TYPES, jump_addr],
                         capture_output=True, text=True, timeout=60)
    keys = parse_scan(res.stdout).get(jump_addr)
    if not keys:
        raise RuntimeError(f"ssh-keyscan got no key from the jump host {jump} ({jump_addr}): "
                           f"{res.stderr.strip() or 'no answer'}")
    record({jump: keys}, f"of the jump host {jump} ({jump_addr}), scanned from this machine")

    # 2. the others, scanned on the jump host over a checked session
    others = {h: config.cluster_address(topo, h) for h in topo["hosts"] if h != jump}
    if not others:
        return path
    ssh = ["ssh", "-i", acc["key"], "-o", f"UserKnownHostsFile={path}", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{acc['users'][jump]}@{jump_addr}",
           "ssh-keyscan", "-T", "10", "-t", KEY_TYPES, *others.values()]
    res = subprocess.run(ssh, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and not res.stdout:
        raise RuntimeError(f"ssh-keyscan on {jump} failed: {res.stderr.strip()}")
    scanned = parse_scan(res.stdout)
    missing = [h for h, addr in others.items() if not scanned.get(addr)]
    if missing:
        raise RuntimeError(f"{jump} got no host key from {', '.join(missing)} "
                           f"({', '.join(others[h] for h in missing)}); is sshd running there?")
    record({h: scanned[addr] for h, addr in others.items()}, f"of the other hosts, scanned on {jump}")
    return path


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise RuntimeError("the keys must be confirmed on a terminal (or pass --yes after comparing them)")
    return input(f"{question} [yes/no] ").strip().lower() in ("y", "yes")
