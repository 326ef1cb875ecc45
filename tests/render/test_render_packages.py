"""base.packages on Debian: the repositories' keys (packages.apt_keys, read on the control
machine) are laid down before the sources that name them, and a new key updates apt's lists;
the lab's own mirror is one such signed repository, not a [trusted=yes] one."""
from __future__ import annotations

import json

import pytest

from halite import config, view

from rendering import arg, salt_call


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-packages")


def test_the_labs_mirror_is_trusted_by_its_key_as_a_signed_repository_is(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_sls", "base.packages")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    states = json.loads(res.stdout)["local"]
    key = "base-apt-key-halite-lab-mirror"
    want = view.apt_keys(config.load())["halite-lab-mirror"]
    assert arg(states, key, "name") == "/etc/apt/keyrings/halite-lab-mirror.asc" == want["path"]
    assert arg(states, key, "contents") == want["text"]
    assert want["text"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert {"file": "base-apt-sources"} in arg(states, key, "require_in")
    sources = arg(states, "base-apt-sources", "contents")
    assert sources[1:] == ["deb [signed-by=/etc/apt/keyrings/halite-lab-mirror.asc] file:/srv/halite-mirror/debian ./"]
    assert not any("trusted=yes" in line for line in sources)
    assert {"file": key} in arg(states, "base-apt-update", "onchanges")
