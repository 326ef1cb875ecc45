"""_modules/tls_cert.py and _states/cert_health.py against real certificates from
halite.pki, read by the real openssl (as on the hosts)."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import cert_health
import pytest
import tls_cert
from salt.exceptions import CommandExecutionError

from halite import pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _run_all(argv, **_):
    res = subprocess.run(argv, capture_output=True, text=True)
    return {"retcode": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


@pytest.fixture
def configure_loader_modules():
    return {tls_cert: {"__salt__": {"cmd.run_all": _run_all}},
            cert_health: {"__salt__": {"tls_cert.info": tls_cert.info}, "__opts__": {"test": False}}}


def _cert(tmp_path, days: int):
    pki.ensure_ca(tmp_path, "lab")
    crt, _ = pki.host_cert(tmp_path, "db-01", ["db-01"], ["10.0.0.1"], days=days, renew_before_days=0)
    path = tmp_path / "host.crt"
    path.write_text(crt)
    return path, crt


def test_info_reads_the_end_date_and_names(tmp_path):
    path, crt = _cert(tmp_path, 100)
    seen = tls_cert.info(str(path))
    assert seen["subject"] == "CN=db-01"
    assert seen["issuer"].startswith("CN=")
    assert dt.datetime.fromisoformat(seen["not_after"]) == pki.expires(crt).replace(microsecond=0)
    assert 99.9 < seen["days_left"] <= 100


def test_info_refuses_a_missing_or_broken_file(tmp_path):
    with pytest.raises(CommandExecutionError, match="no such certificate"):
        tls_cert.info(str(tmp_path / "nope.crt"))
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(CommandExecutionError, match="openssl x509"):
        tls_cert.info(str(broken))


def test_fresh_passes_with_days_to_spare_and_fails_near_the_end(tmp_path):
    path, _ = _cert(tmp_path, 100)
    ok = cert_health.fresh(str(path), min_days=30)
    assert ok["result"] is True and ok["changes"] == {} and "days left" in ok["comment"]
    near = cert_health.fresh(str(path), min_days=101)
    assert near["result"] is False and "orch.rotate_certs" in near["comment"]
    gone = cert_health.fresh(str(tmp_path / "gone.crt"))
    assert gone["result"] is False and "no such certificate" in gone["comment"]
