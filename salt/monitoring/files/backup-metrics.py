#!/usr/bin/python3
# Managed by Salt (halite monitoring.exporters)
"""The repository's newest successful backup of each type, for node-exporter's textfile
collector (rule BackupTooOld): ``pgbackrest --output=json info`` as postgres, written to
the file named by the first argument atomically (a scrape never reads half a file).

Usage: backup-metrics /var/lib/prometheus/node-exporter/halite_backup.prom
"""
from __future__ import annotations  # the type hints on Python 3.6+ (RedHat 8's /usr/bin/python3)

import json
import os
import subprocess
import sys
import tempfile


def lines() -> list[str]:
    res = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", "--output=json", "info"],
                         capture_output=True, text=True, timeout=120)
    out = ["# HELP halite_backup_info_ok 1 when pgbackrest info answered, else 0",
           "# TYPE halite_backup_info_ok gauge",
           f"halite_backup_info_ok {1 if res.returncode == 0 else 0}",
           "# HELP halite_backup_last_success_timestamp_seconds End of the newest backup of this type",
           "# TYPE halite_backup_last_success_timestamp_seconds gauge"]
    if res.returncode != 0:
        return out
    for stanza in json.loads(res.stdout):
        newest: dict[str, int] = {}
        for backup in stanza.get("backup") or []:
            if backup.get("error"):
                continue
            kind, stop = backup["type"], int(backup["timestamp"]["stop"])
            newest[kind] = max(newest.get(kind, 0), stop)
        for kind, stop in sorted(newest.items()):
            out.append(f'halite_backup_last_success_timestamp_seconds{{stanza="{stanza["name"]}",type="{kind}"}} {stop}')
    return out


def main() -> int:
    target = sys.argv[1]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".halite_backup.")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines()) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
