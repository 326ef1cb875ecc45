"""Shared helpers for unit tests of our Salt modules and states.

* ``_modules``, ``_states`` and ``_utils`` go on ``sys.path`` so tests can ``import patroni``.
* ``salt_utils()``: the ``__utils__`` our modules get from Salt's loader.
* ``fake_http``: a stand-in for the HTTP boundary (an opener's ``open``), which
  answers from canned routes and records every request.
* ``clock``: a fake ``time`` module whose ``sleep`` advances ``monotonic``,
  so wait loops run instantly and deterministically.
"""
from __future__ import annotations

import io
import json
import sys
import urllib.error
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# the tree under test first: an editable install may point at another checkout
for _sub in ("_states", "_modules", "_utils", "."):
    _path = str((REPO / _sub).resolve())
    if _path not in sys.path:
        sys.path.insert(0, _path)


def salt_utils() -> dict:
    """``__utils__`` as Salt's loader gives it to our modules and states."""
    import halite_http
    import halite_wait

    utils = {f"halite_http.{name}": getattr(halite_http, name)
             for name in ("setting", "check_keywords", "base_url", "request", "opener")}
    utils["halite_wait.poll"] = halite_wait.poll
    return utils


class FakeResponse:
    def __init__(self, status: int, body: bytes):
        self.status = status
        self._body = body

    def read(self) -> bytes:
        return self._body

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeHTTP:
    """Answers ``(method, url)`` from routes; records requests in ``calls``.

    A route's answer is ``(status, body)``; ``body`` is JSON-encoded unless it
    is a str. A list of answers is served in turn, the last one repeating. An
    exception instance is raised as is (e.g. ``URLError``).
    """

    def __init__(self):
        self.routes: dict[tuple[str, str], object] = {}
        self.calls: list[dict] = []
        self.tls: dict | None = None  # what halite_http.opener was asked for (see opener)

    def route(self, method: str, url: str, *answers):
        self.routes[(method, url)] = list(answers)

    def open(self, req, timeout=None):
        body = json.loads(req.data) if req.data else None
        self.calls.append(
            {
                "method": req.get_method(),
                "url": req.full_url,
                "body": body,
                "headers": dict(req.header_items()),
                "timeout": timeout,
            }
        )
        key = (req.get_method(), req.full_url)
        if key not in self.routes:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        answers = self.routes[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        status, payload = answer
        raw = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        if status >= 400:
            raise urllib.error.HTTPError(req.full_url, status, "Error", {}, io.BytesIO(raw))
        return FakeResponse(status, raw)

    def opener(self, ca_file=None, cert_file=None, key_file=None):
        """Stands in for ``halite_http.opener``: records the TLS files asked for, answers itself."""
        self.tls = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file}
        return self

    def requests(self, method: str, url: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["url"] == url]


class FakeClock:
    """Replaces the ``time`` module inside the module under test."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_http():
    return FakeHTTP()


@pytest.fixture
def clock():
    return FakeClock()


# --------------------------------------------------------------------------
# the configuration model: the shipped description and a mutation's problems


@pytest.fixture(scope="module")
def good():
    """(topology, settings) of the shipped, checked description."""
    from halite import config

    data = config.load(generate=False)  # the secrets left empty: the model's defaults
    topo = data.pop("topology")
    return topo, data


def problems(topo, settings):
    """The problems a (topology, settings) pair is refused with."""
    import copy

    from halite import config

    with pytest.raises(config.ConfigError) as info:
        config.load(copy.deepcopy(topo), copy.deepcopy(settings))
    return info.value.problems


@pytest.fixture(autouse=True)
def _generated_material_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """halite's CA, host certificates and generated secrets (halite.pki.state_dir) go to a
    folder of the test session, never to the repository's .halite/ that the lab uses."""
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path_factory.getbasetemp() / "halite-state"))


@pytest.fixture
def open_umask():
    """A umask of 0, so file modes come from the code under test and not from the caller's umask."""
    import os
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def fsync_modes(monkeypatch) -> list:
    """The mode of every file as it is fsync'ed (before its rename into place), in order."""
    import os
    import stat
    seen: list = []
    real_fsync = os.fsync

    def fsync(fd):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen
