#!/usr/bin/python3
"""Keep etcd's leadership off the host that runs the PostgreSQL primary.

Managed by Salt (halite patroni.etcd_leader). Python standard library only.

Why: etcd runs on the database hosts. When one host carries both the Patroni
primary and the etcd leader and loses power, two elections happen at once,
and etcd's new leader extends every lease (Patroni's leader lock included) by
a full TTL plus an election timeout. Measured in the halite lab: writes came
back after about 25 s instead of about 22 s. With the etcd leader elsewhere,
the leader lock simply expires.

What it does, each time it runs: if the local Patroni answers 200 on
``GET /primary`` and the local etcd member is the etcd leader, it asks etcd to
hand leadership to another started voting member
(``POST /v3/maintenance/transfer-leadership``). Otherwise it does nothing.

It runs as Patroni's ``on_role_change`` callback (arguments: action, role,
scope) and from ``halite-etcd-leader-away.timer``, because etcd can also elect
the primary's host on its own (after an etcd restart, for example).
"""
import json
import ssl
import sys
import urllib.error
import urllib.request

ETCD = "{{ etcd_url }}"
PATRONI = "{{ patroni_url }}"
# halite's CA and the postgres user's copy of the host key (this runs as postgres);
# ({} in clear text); etcd asks every client for a certificate, Patroni's API checks one shown
ETCD_TLS = {{ etcd_tls|json }}
PATRONI_TLS = {{ patroni_tls|json }}


def _opener(tls):
    """Straight to the server (no http_proxy from the environment); with ``tls``, https
    verified against halite's CA, showing this host's certificate."""
    handlers = [urllib.request.ProxyHandler({})]
    if tls:
        ctx = ssl.create_default_context(cafile=tls["ca"])
        ctx.load_cert_chain(tls["cert"], tls["key"])
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers)


try:
    _ETCD_OPENER = _opener(ETCD_TLS)
    _PATRONI_OPENER = _opener(PATRONI_TLS)
except OSError as exc:  # ssl.SSLError too: a key not laid down yet; the timer tries again
    print(f"halite-etcd-leader-away: TLS files cannot be used: {exc!r}", file=sys.stderr)
    sys.exit(0)


def etcd(path, payload=None):
    req = urllib.request.Request(
        ETCD + path, data=json.dumps(payload or {}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with _ETCD_OPENER.open(req, timeout=3) as resp:
        return json.load(resp)


def patroni_is_primary():
    try:
        with _PATRONI_OPENER.open(urllib.request.Request(PATRONI + "/primary"), timeout=3) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


def main(argv):
    if len(argv) >= 3 and argv[2] not in ("primary", "master"):
        return 0  # a callback for a replica: nothing to do
    if not patroni_is_primary():
        return 0
    status = etcd("/v3/maintenance/status")
    me, leader = status["header"]["member_id"], status.get("leader")
    if me != leader:
        return 0
    members = etcd("/v3/cluster/member/list").get("members") or []
    others = sorted((m for m in members if m["ID"] != me and m.get("name") and not m.get("isLearner")),
                    key=lambda m: m["name"])
    if not others:
        print("etcd leader is on the primary's host, and there is no other started member to hand it to")
        return 0
    target = others[0]
    etcd("/v3/maintenance/transfer-leadership", {"targetID": target["ID"]})
    print(f"etcd leadership handed from this host (the PostgreSQL primary) to {target['name']}")
    return 0


def run(argv):
    """main(), but never failing: Patroni's callback must not fail, and the timer tries again."""
    try:
        return main(argv)
    except (OSError, ValueError, KeyError) as exc:
        print(f"halite-etcd-leader-away: {exc!r}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
