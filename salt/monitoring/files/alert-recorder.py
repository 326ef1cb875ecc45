#!/usr/bin/python3
# Managed by Salt (halite monitoring.server)
"""halite's alert recorder: Alertmanager's webhook receiver when monitoring.webhook_url
is empty. Every notification Alertmanager POSTs is appended to alerts.jsonl in the
working directory (systemd's StateDirectory), one JSON line each, with the time it was
received; nothing else is done with it. Listens on the loopback only.

Usage: alert-recorder ADDRESS PORT
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = "alerts.jsonl"


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self.send_error(400, "not JSON")
            return
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"received_at": time.time(), "notification": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):  # one line per notification in the journal
        sys.stderr.write("alert-recorder: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Recorder).serve_forever()
