#!/usr/bin/python3
# Managed by Salt (halite monitoring.exporters)
"""The end of each certificate named on the command line, for node-exporter's textfile
collector (rule CertificateExpiresSoon), read with openssl and written to the file named
by the first argument atomically (a scrape never reads half a file).

Usage: cert-metrics OUTPUT.prom CERT [CERT...]
"""
from __future__ import annotations  # the type hints on Python 3.6+ (RedHat 8's /usr/bin/python3)

import os
import ssl
import subprocess
import sys
import tempfile


def not_after(path: str) -> float | None:
    res = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0 or not res.stdout.startswith("notAfter="):
        return None
    return float(ssl.cert_time_to_seconds(res.stdout.strip().split("=", 1)[1]))


def main() -> int:
    target, certs = sys.argv[1], sys.argv[2:]
    lines = ["# HELP halite_tls_cert_expiry_timestamp_seconds When the certificate ends (notAfter)",
             "# TYPE halite_tls_cert_expiry_timestamp_seconds gauge"]
    for path in certs:
        end = not_after(path)
        if end is not None:
            lines.append(f'halite_tls_cert_expiry_timestamp_seconds{{path="{path}"}} {end:.0f}')
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".halite_tls.")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
