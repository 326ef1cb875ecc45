"""First contact (halite/hosts.py): scans parsed, recorded keys read back, a changed key
refused; with real keys from ssh-keygen. The scan through the lab's jump host is in
tests/lab/test_10_foundation.py."""
from __future__ import annotations

import copy
import subprocess

import pytest

from halite import hosts

from conftest import good  # noqa: F401


def keypair(tmp_path, name: str) -> tuple[str, str]:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    keytype, key = (tmp_path / f"{name}.pub").read_text().split()[:2]
    return keytype, key


def test_a_scan_is_read_by_address_and_comments_are_skipped():
    text = "# 10.0.1.11:22 SSH-2.0-OpenSSH_9.2\n10.0.1.11 ssh-ed25519 AAAA1\n10.0.1.12 ssh-ed25519 AAAA2\n" \
           "10.0.1.12 ecdsa-sha2-nistp256 BBBB2\n"
    assert hosts.parse_scan(text) == {"10.0.1.11": [("ssh-ed25519", "AAAA1")],
                                      "10.0.1.12": [("ssh-ed25519", "AAAA2"), ("ecdsa-sha2-nistp256", "BBBB2")]}


def test_a_fingerprint_is_what_ssh_keygen_prints(tmp_path):
    keytype, key = keypair(tmp_path, "k")
    fp = hosts.fingerprint(f"db-01 {keytype} {key}")
    shown = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True).stdout
    assert fp.startswith("SHA256:") and fp.endswith("(ED25519)") and fp.split()[0] == shown.split()[1]


def test_keys_already_recorded_are_not_added_twice_and_a_changed_key_is_refused(tmp_path, good):
    topo = copy.deepcopy(good[0])
    old = keypair(tmp_path, "old")
    new = keypair(tmp_path, "new")
    known_file = tmp_path / "known_hosts"
    known_file.write_text(f"db-01,10.77.1.11 {old[0]} {old[1]}\n")
    known = hosts.read_known(known_file)
    lines, recorded = hosts._check_and_lines(topo, "db-01", [old], known)
    assert recorded and lines == [f"db-01,10.77.1.11 {old[0]} {old[1]}"]
    lines, recorded = hosts._check_and_lines(topo, "db-02", [new], known)
    assert not recorded and lines == [f"db-02,10.77.1.12 {new[0]} {new[1]}"]
    with pytest.raises(RuntimeError, match=r"db-01 \(db-01\) now shows another ssh-ed25519 key than the one "
                                           r"recorded: SHA256:.*someone may be in the middle"):
        hosts._check_and_lines(topo, "db-01", [new], known)
