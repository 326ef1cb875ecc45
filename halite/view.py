"""Each host's view of the checked configuration, computed once, in Python.

The pillar (``pillar/stack.sls``) is :func:`pillar_for`: the settings a host
needs, the secrets its roles need and nothing else, and every fact derived
from the topology (etcd's member list, the firewall rules and the pg_hba
entries from one access table, Patroni's DCS settings, versioned paths).
Templates only print these values.

Example::

    from halite import config, view
    view.pillar_for("db-01", config.load())["halite"]["host"]["pg_hba"]
"""
from __future__ import annotations

import base64
import copy
import hashlib
import re
from pathlib import Path

from halite import platforms
from halite.model import DCS_KEYS, ConfigError

#: Roles a host may hold, and the Salt states each role brings.
ROLE_STATES: dict[str, list[str]] = {
    "jump": [],
    # pgbackrest only when the topology has a backup host (see host_states)
    "db": ["tls", "etcd", "postgresql", "pgbackrest", "patroni", "pgbouncer"],
    "haproxy": ["tls", "haproxy"],
    "app": ["tls", "web"],
    "legacy_db": ["legacy"],
    "backup": ["tls", "backup"],
    # Prometheus, Alertmanager and the alert recorder; every host of a topology with a
    # monitoring host also gets monitoring.exporters (see host_states)
    "monitoring": ["tls", "monitoring.server", "monitoring.dashboard"],
}

#: Which roles need which secret (dotted key in the settings). A host gets a
#: secret only when one of its roles is listed; the jump host gets none.
SECRET_ROLES: dict[str, set[str]] = {
    # Patroni bootstraps and manages PostgreSQL with these
    "users.superuser.password": {"db"},
    "users.replication.password": {"db"},
    "users.rewind.password": {"db"},
    # PgBouncer's auth_query user: in its userlist on the db hosts
    "users.pgbouncer_auth.password": {"db"},
    # the site's role: created on the cluster (db) and on the old server
    # (legacy_db), used by the site (app) and HAProxy's round-trip gate (haproxy)
    "users.app.password": {"db", "app", "haproxy", "legacy_db"},
    # the move: created on the old server, used by the subscription on a db host
    "users.legacy_move.password": {"db", "legacy_db"},
    # Patroni's REST API (unsafe endpoints): Patroni and halite's modules on db hosts
    "patroni.restapi.password": {"db"},
    "web.secret_key": {"app"},
    # the backup host's read-only login (restore points); created on the cluster
    "users.backup.password": {"db", "backup"},
    # the repository's encryption passphrase: only where the repository is
    "backup.cipher_pass": {"backup"},
    # HAProxy's stats page (basic auth): generated per install unless the pillar gives one;
    # Prometheus scrapes HAProxy's metrics behind the same login
    "haproxy.stats_password": {"haproxy", "monitoring"},
    # the exporters' login on the cluster (PostgreSQL and PgBouncer): db hosts only
    "users.monitor.password": {"db"},
}

#: Shown instead of a secret by ``halite config show``.
MASK = "********"


def hosts_with_role(topo: dict, role: str) -> list[str]:
    return [h for h, v in topo["hosts"].items() if role in (v.get("roles") or [])]


def etcd_hosts(topo: dict) -> list[str]:
    return hosts_with_role(topo, "db")


def cluster_address(topo: dict, host: str) -> str:
    """The address other hosts use for ``host``: private if it has one, else the first."""
    addrs = topo["hosts"][host]["addresses"]
    return addrs.get("private") or next(iter(addrs.values()))


def jump_address(topo: dict) -> tuple[str, str]:
    """The jump host and the address the control machine reaches it on: its edge address
    if it has one, else its cluster address."""
    jump = hosts_with_role(topo, "jump")[0]
    return jump, topo["hosts"][jump]["addresses"].get("edge") or cluster_address(topo, jump)


def beside_chain(topo: dict) -> bool:
    """Whether orch.deploy's side steps, the old server's and the repository host's, run in
    parallel with its database chain (the ``halite:beside_chain`` pillar key).

    Two salt-ssh runs on one host would share its thin directory and state files, so no side
    step may share a host with a step running meanwhile. The model keeps both roles off the db
    hosts, whose steps they run beside; what is left is the two sharing a host (the old
    server's step runs while the repository's and the backup's do). In the lab they do not.
    Prometheus is not a side step: started early, it would fire ScrapeTargetDown for every
    exporter not there yet.
    """
    return not set(hosts_with_role(topo, "legacy_db")) & set(hosts_with_role(topo, "backup"))


def host_states(topo: dict, host: str) -> list[str]:
    states: list[str] = []
    has_backup = bool(hosts_with_role(topo, "backup"))
    for role in topo["hosts"][host].get("roles") or []:
        for state in ROLE_STATES.get(role, []):
            if state == "pgbackrest" and not has_backup:
                continue
            if state not in states:
                states.append(state)
    if monitoring_host_of(topo):
        # exporters last: PostgreSQL's and PgBouncer's need the cluster and the pooler up
        states.append("monitoring.exporters")
    return states


def monitoring_host_of(topo: dict) -> str | None:
    """The host with the role monitoring (Prometheus), or None."""
    hosts = hosts_with_role(topo, "monitoring")
    return hosts[0] if hosts else None


def _addresses_of(topo: dict, role: str) -> list[str]:
    if role == "control":
        return [n["control_address"] for n in topo["networks"].values() if n.get("control_address")]
    out: list[str] = []
    for h in hosts_with_role(topo, role):
        out.extend(topo["hosts"][h]["addresses"].values())
    return out


def firewall_rules(data: dict, host: str) -> list[dict]:
    """The ports ``host`` opens and to whom: the one access table.

    SSH: the jump host accepts it from the control machine only; every other
    host from the jump host only. Services: ``firewall.services``; with TLS on the
    site, the entry that opens ``web.http_port`` to the app hosts opens
    ``web.https_port`` too, to the same sources (plain HTTP then only redirects).
    """
    topo = data["topology"]
    roles = topo["hosts"][host].get("roles") or []
    ssh_from = _addresses_of(topo, "control") if "jump" in roles else _addresses_of(topo, "jump")
    rules = [{"name": "ssh", "ports": [22], "sources": sorted(set(ssh_from))}]
    web = data["web"]
    for svc in data["firewall"]["services"]:
        if not set(svc["to"]) & set(roles):
            continue
        sources = sorted({a for role in svc["from"] for a in _addresses_of(topo, role)})
        ports = list(svc["ports"])
        if (tls_on(data)["site"] and "app" in svc["to"] and "app" in roles and web["http_port"] in ports
                and web["https_port"] not in ports):
            ports.append(web["https_port"])
        rule = {"name": svc["name"], "ports": ports, "sources": sources}
        if svc.get("network"):
            # only to the host's address on that network (a host without one opens nothing)
            mine = topo["hosts"][host]["addresses"].get(svc["network"])
            if not mine:
                continue
            rule["addresses"] = [mine]
        if sources:
            rules.append(rule)
    return rules


def firewall_matrix(data: dict) -> list[dict]:
    """Every (source, destination address, port) pair the access table speaks of, and its verdict.

    Sources are every host and the control machine; destinations every other host's
    addresses on a network the source shares; ports every port any host's rules open
    (:func:`firewall_rules`: ``firewall.services``, SSH, the site's https port). ``allowed`` is what :func:`firewall_rules` lets in. The lab's security test
    tries each pair and writes the result to ``docs/firewall-matrix.md``.

    :returns: ``[{"src", "dst", "address", "network", "port", "service", "allowed"}, ...]``.
    """
    topo = data["topology"]
    ports: dict[int, str] = {}
    for host in topo["hosts"]:
        for rule in firewall_rules(data, host):
            for port in rule["ports"]:
                ports.setdefault(port, rule["name"])
    sources = {h: dict(e["addresses"]) for h, e in topo["hosts"].items()}
    sources["control"] = {n: net["control_address"] for n, net in topo["networks"].items()
                          if net.get("control_address")}
    out = []
    for src, src_addrs in sources.items():
        for dst, entry in topo["hosts"].items():
            if dst == src:
                continue
            rules = firewall_rules(data, dst)
            for network, address in entry["addresses"].items():
                if network not in src_addrs:
                    continue
                for port, service in sorted(ports.items()):
                    allowed = any(port in r["ports"] and src_addrs[network] in r["sources"]
                                  and address in r.get("addresses", [address]) for r in rules)
                    out.append({"src": src, "dst": dst, "address": address, "network": network,
                                "port": port, "service": service, "allowed": allowed})
    return out


def allowed_hosts(data: dict, role: str, port: int) -> list[str]:
    """Hosts of the topology the access table lets reach ``port`` on hosts of ``role``."""
    topo = data["topology"]
    out: list[str] = []
    for svc in data["firewall"]["services"]:
        if role in svc["to"] and port in svc["ports"]:
            for src in svc["from"]:
                for h in hosts_with_role(topo, src) if src != "control" else []:
                    if h not in out:
                        out.append(h)
    return out


def pg_hba(data: dict) -> list[str]:
    """PostgreSQL's pg_hba on the db hosts, from the same table as the firewall.

    Every host allowed to reach ``postgresql.port`` gets scram-sha-256 entries
    (``hostssl`` when the ``postgresql`` link is under TLS, ``host`` if it is in
    ``tls.unsafe_plaintext``):
    a db host for replication, the superuser and rewind (Patroni, pg_rewind)
    and the pooler's users; any other host for the site's user and the
    pooler's auth user only. Nothing from 0.0.0.0/0.
    """
    topo, u = data["topology"], data["users"]
    su, repl, rewind = u["superuser"]["username"], u["replication"]["username"], u["rewind"]["username"]
    app, auth = u["app"]["username"], u["pgbouncer_auth"]["username"]
    # with TLS on, a network address matches hostssl lines only: a clear-text connection from
    # it finds no entry and is refused ("no encryption"); the loopback may stay in clear text
    kind = "hostssl" if tls_on(data)["postgresql"] else "host"
    lines = [
        f"local all {su} peer",
        "local all all scram-sha-256",
        "host all all 127.0.0.1/32 scram-sha-256",
        # Patroni reads the local timeline over a local replication connection
        f"host replication {repl} 127.0.0.1/32 scram-sha-256",
    ]
    backup_user = u["backup"]["username"]
    for h in allowed_hosts(data, "db", data["postgresql"]["port"]):
        addresses = sorted(set(topo["hosts"][h]["addresses"].values()))
        is_db = "db" in topo["hosts"][h]["roles"]
        host_roles = set(topo["hosts"][h]["roles"])
        if "backup" in host_roles:
            # the backup host reads restore points, with its read-only login only
            lines += [f"{kind} {u['app']['database']} {backup_user} {addr}/32 scram-sha-256" for addr in addresses]
            if not host_roles - {"backup"}:
                continue
        for addr in addresses:
            if is_db:
                lines.append(f"{kind} replication {repl} {addr}/32 scram-sha-256")
                lines.append(f"{kind} all {su},{rewind} {addr}/32 scram-sha-256")
            lines.append(f"{kind} all {app},{auth} {addr}/32 scram-sha-256")
    return lines


def legacy_hba_sources(data: dict) -> list[str]:
    """Addresses the access table lets reach the legacy server (the move's user)."""
    topo = data["topology"]
    return [cluster_address(topo, h) for h in allowed_hosts(data, "legacy_db", data["legacy"]["port"])]


def etcd_view(data: dict, host: str) -> dict:
    """etcd's member list, token, peers and URLs as this host needs them.

    With ``tls_on.etcd`` every URL is https and ``tls`` names the files etcd serves and
    verifies with (the etcd user's copy of the host key), and the files its clients show
    (``client``: Patroni runs as postgres, so the postgres copy); else ``tls`` is None.
    ``endpoints`` are ``host:port`` (Patroni's ``etcd3.hosts``), ``client_urls`` the same
    with the scheme. 127.0.0.1 listens too, for local clients (halite's modules, etcdctl).
    """
    topo, etcd = data["topology"], data["etcd"]
    members = etcd_hosts(topo)
    on = tls_on(data)["etcd"]
    scheme = "https" if on else "http"
    addr, client, peer = cluster_address(topo, host), etcd["client_port"], etcd["peer_port"]
    keys = TLS_PATHS["keys"]
    return {
        "scheme": scheme,
        "initial_cluster": ",".join(f"{m}={scheme}://{cluster_address(topo, m)}:{peer}" for m in members),
        "token": f"{data['patroni']['scope']}-{topo['name']}",
        "endpoints": [f"{cluster_address(topo, m)}:{client}" for m in members],
        "client_urls": [f"{scheme}://{cluster_address(topo, m)}:{client}" for m in members],
        "peers": [cluster_address(topo, m) for m in members if m != host],
        "peer_url": f"{scheme}://{addr}:{peer}",
        "listen_client_urls": f"{scheme}://{addr}:{client},{scheme}://127.0.0.1:{client}",
        "advertise_client_url": f"{scheme}://{addr}:{client}",
        "local_url": f"{scheme}://127.0.0.1:{client}",
        "tls": {"ca": TLS_PATHS["ca"], "cert": TLS_PATHS["cert"], "key": keys["etcd"],
                "client": {"ca": TLS_PATHS["ca"], "cert": TLS_PATHS["cert"], "key": keys["postgres"]}}
        if on else None,
    }


def patroni_api_view(data: dict) -> dict:
    """Patroni's REST API on a db host: its scheme, the local URL, and with
    ``tls_on.patroni_api`` the files it serves with (the postgres copy of the host key)
    and the CA it verifies clients' certificates against (``verify_client: optional``:
    a client with no certificate may still read), else ``tls`` is None."""
    on = tls_on(data)["patroni_api"]
    scheme = "https" if on else "http"
    return {
        "scheme": scheme,
        "local_url": f"{scheme}://127.0.0.1:{data['patroni']['restapi']['port']}",
        "tls": {"ca": TLS_PATHS["ca"], "cert": TLS_PATHS["cert"], "key": TLS_PATHS["keys"]["postgres"]}
        if on else None,
    }


def haproxy_checks(data: dict) -> dict:
    """How HAProxy verifies each member's Patroni API in its health check, per member: the
    options on its ``server`` line (the certificate verified against halite's CA, the name
    checked being the member's host name, which its certificate carries), or "" in clear text.
    The check's ``tcp-check connect ... ssl`` rule uses them (:func:`haproxy_backends`)."""
    hosts = hosts_with_role(data["topology"], "db")
    if not tls_on(data)["patroni_api"]:
        return {h: "" for h in hosts}
    return {h: f"verify required ca-file {TLS_PATHS['ca']} check-sni {h} verifyhost {h}" for h in hosts}


#: PostgreSQL's SSLRequest (length 8, code 80877103): PgBouncer and PostgreSQL answer it with
#: one byte, ``S`` (0x53) or ``N`` (0x4E), before any login; a hung one does not answer.
PG_SSLREQUEST_HEX = "0000000804d2162f"


def haproxy_backends(data: dict) -> dict:
    """HAProxy's write and read backends, as its configuration prints them.

    A member counts as up only when its Patroni API says so (``/primary``, or ``/replica``
    no further behind than ``replica_max_lag``) *and* the server the traffic goes to
    answers PostgreSQL's SSLRequest: a dead or hung PgBouncer takes its member out of
    routing. Behind each member's PgBouncer, the write backend keeps a ``backup`` server
    straight to that member's PostgreSQL (the same checks on its port, at most the
    pooler's ``default_pool_size`` connections, HAProxy queues the rest): with the pooler
    down on the primary's host, writes go on directly; once the pooler is back, new
    sessions use it again and the direct ones are cut. The read backend keeps each member
    as a ``backup`` that tracks the member's state in the write backend: with no replica
    up, reads go to the primary.

    Sizes: each port holds ``haproxy.maxconn`` clients; each pooler server takes
    ``pgbouncer.max_client_conn`` divided by the number of HAProxy hosts (``pooler_maxconn``),
    the rest wait in HAProxy's queue (``haproxy.timeout.queue``); the global limit is one
    port's plus 100 (stats, checks): a storm may fill either port, and beyond the global
    limit new clients wait in the kernel's accept queue. HAProxy's open-file limit
    (``nofile``, systemd's ``LimitNOFILE``) follows.

    :returns: ``{"servers": [{"name", "address", "verify"}], "check_ssl", "api_port",
        "pooler_port", "postgres_port", "direct_maxconn", "pooler_maxconn", "port_maxconn",
        "global_maxconn", "nofile", "sslrequest_hex", "direct_suffix", "primary_suffix"}``
    """
    topo = data["topology"]
    verify = haproxy_checks(data)
    return {
        "servers": [{"name": h, "address": cluster_address(topo, h), "verify": verify[h]}
                    for h in hosts_with_role(topo, "db")],
        "check_ssl": tls_on(data)["patroni_api"],
        "api_port": data["patroni"]["restapi"]["port"],
        "pooler_port": data["pgbouncer"]["port"],
        "postgres_port": data["postgresql"]["port"],
        "direct_maxconn": data["pgbouncer"]["default_pool_size"],
        # each pooler holds max_client_conn clients, shared by the HAProxy hosts; a port holds
        # haproxy.maxconn, the rest of them wait in the queue
        "pooler_maxconn": max(1, data["pgbouncer"]["max_client_conn"] // len(hosts_with_role(topo, "haproxy") or [None])),
        "port_maxconn": data["haproxy"]["maxconn"],
        "global_maxconn": data["haproxy"]["maxconn"] + 100,
        # two descriptors per connection (client and server side), 1024 for listeners and checks
        "nofile": 2 * (data["haproxy"]["maxconn"] + 100) + 1024,
        "sslrequest_hex": PG_SSLREQUEST_HEX,
        "direct_suffix": "-postgres",
        "primary_suffix": "-primary",
    }


def patroni_dcs(data: dict) -> dict:
    """Patroni's dynamic configuration as one mapping: bootstrap.dcs and
    PATCH /config (patroni.dynamic) print the same one."""
    dcs = data["patroni"]["dcs"]
    out = {key: dcs[key] for key in DCS_KEYS if dcs.get(key) is not None}
    params = dict(data["postgresql"]["parameters"])
    archive = archive_commands(data)
    if archive:
        # whichever member is primary archives (asynchronously, through the repository's server)
        params.update({"archive_mode": "on", "archive_command": archive["archive_command"],
                       "archive_timeout": data["backup"]["archive_timeout"]})
    out["postgresql"] = {"use_pg_rewind": dcs["postgresql"]["use_pg_rewind"],
                         "use_slots": dcs["postgresql"]["use_slots"],
                         "parameters": params}
    return out


#: Where pgBackRest's files live on the hosts (Debian's package: /etc/pgbackrest.conf,
#: the server unit pgbackrest.service, the spool and log folders owned by postgres).
PGBACKREST_PATHS = {
    "conf": "/etc/pgbackrest.conf",
    "drill_conf": "/etc/pgbackrest/drill.conf",
    "tls_dir": "/etc/pgbackrest/tls",
    "spool": "/var/spool/pgbackrest",
    "log": "/var/log/pgbackrest",
    "drill_dir": "/var/lib/halite-drill",
}


def backup_host(data: dict) -> str | None:
    """The host with the role backup (the repository), or None."""
    hosts = hosts_with_role(data["topology"], "backup")
    return hosts[0] if hosts else None


def _tls_options(prefix: str, host: str) -> list[list[str]]:
    tls = PGBACKREST_PATHS["tls_dir"]
    return [[f"{prefix}-ca-file", f"{tls}/ca.crt"], [f"{prefix}-cert-file", f"{tls}/{host}.crt"],
            [f"{prefix}-key-file", f"{tls}/{host}.key"]]


def pgbackrest_view(data: dict, host: str) -> dict:
    """pgBackRest's configuration for ``host``, as ordered ``[key, value]`` pairs per section.

    The repository lives on the backup host; every db host and the backup host
    run pgBackRest's TLS server (certificates from halite's CA, clients known by
    their certificate's name): a member pushes WAL to the repository through the
    backup host's server, and the backup host reaches each member's PostgreSQL
    through the member's server (backups from a standby, ``backup-standby``).
    ``drill`` is the backup host's second file: the repository alone, so that a
    restore into a scratch folder runs there (pgBackRest restores only where no
    ``pg1-host`` is set).
    """
    topo, b, pg = data["topology"], data["backup"], data["postgresql"]
    repo = backup_host(data)
    stanza = b["stanza"]
    roles = topo["hosts"][host].get("roles") or []
    plat = host_platform(data, host)
    paths = platforms.resolve(plat["os_family"], plat["postgresql_version"])["paths"]
    common = [["process-max", str(b["process_max"])], ["compress-type", b["compress_type"]],
              ["log-level-console", "warn"], ["log-level-file", "info"], ["log-path", PGBACKREST_PATHS["log"]],
              ["tls-server-address", cluster_address(topo, host)], ["tls-server-port", str(b["tls_port"])],
              *_tls_options("tls-server", host)]
    out: dict = {"stanza": stanza, "paths": dict(PGBACKREST_PATHS)}
    if "db" in roles:
        out["conf"] = {
            # by name (/etc/hosts, base.hosts): pgBackRest 2.45 checks the server's certificate
            # against the name it dialled, in the CN and DNS names only (not IP addresses)
            "global": [["repo1-host", repo], ["repo1-host-type", "tls"],
                       ["repo1-host-port", str(b["tls_port"])], *_tls_options("repo1-host", host),
                       ["archive-async", "y"], ["spool-path", PGBACKREST_PATHS["spool"]], *common,
                       ["tls-server-auth", f"{repo}={stanza}"]],
            stanza: [["pg1-path", paths["pg_datadir"]], ["pg1-port", str(pg["port"])],
                     ["pg1-socket-path", paths["pg_socket_dir"]]],
            # a replica asks the repository for WAL (restore_command) before streaming: with the
            # backup host down, give up in seconds rather than pgBackRest's default minute per segment
            "global:archive-get": [["io-timeout", "10"]],
        }
    elif "backup" in roles:
        repo_opts = [["repo1-path", b["repo_path"]], ["repo1-cipher-type", b["cipher_type"]]]
        if b["cipher_type"] != "none":
            repo_opts.append(["repo1-cipher-pass", b["cipher_pass"]])
        repo_opts += [["repo1-retention-full", str(b["retention_full"])],
                      ["repo1-retention-diff", str(b["retention_diff"])]]
        members: list[list[str]] = []
        for i, member in enumerate(etcd_hosts(topo), start=1):
            members += [[f"pg{i}-host", member], [f"pg{i}-host-type", "tls"],
                        [f"pg{i}-host-port", str(b["tls_port"])], *_tls_options(f"pg{i}-host", host),
                        [f"pg{i}-path", paths["pg_datadir"]], [f"pg{i}-port", str(pg["port"])],
                        [f"pg{i}-socket-path", paths["pg_socket_dir"]]]
        out["conf"] = {
            "global": [*repo_opts, ["start-fast", "y"], ["backup-standby", "y"], *common,
                       *[["tls-server-auth", f"{m}={stanza}"] for m in etcd_hosts(topo)]],
            stanza: members,
        }
        drill_common = [c for c in common if not c[0].startswith("tls-server")]
        out["drill_conf"] = {"global": [*repo_opts, *drill_common],
                             stanza: [["pg1-path", f"{PGBACKREST_PATHS['drill_dir']}/{stanza}"]]}
        out["timers"] = [
            {"name": "full", "type": "full", "schedule": b["schedule_full"]},
            {"name": "incr", "type": "incr", "schedule": b["schedule_incr"]},
        ]
        out["pg_bindir"] = paths["pg_bindir"]
    return out


def archive_commands(data: dict) -> dict:
    """PostgreSQL's archive and restore commands through pgBackRest (empty without a backup host)."""
    if not backup_host(data):
        return {}
    stanza = data["backup"]["stanza"]
    return {"archive_command": f"pgbackrest --stanza={stanza} archive-push %p",
            "restore_command": f'pgbackrest --stanza={stanza} archive-get %f "%p"'}


#: HAProxy's proxy for writes (``listen primary`` in salt/haproxy/files/haproxy.cfg.jinja):
#: its ``haproxy_backend_active_servers`` is the number of members taking writes.
HAPROXY_WRITE_PROXY = "primary"

#: Files the monitoring states lay down (Debian's packages' own paths where they have one);
#: secrets stay out of prometheus.yml and the exporters' command lines, in files of their own.
MONITORING_PATHS = {
    "haproxy_stats_password": "/etc/prometheus/haproxy_stats.password",
    "prometheus_yml": "/etc/prometheus/prometheus.yml",
    "rules": "/etc/prometheus/halite-alerts.yml",
    "alertmanager_yml": "/etc/prometheus/alertmanager.yml",
    "textfile_dir": "/var/lib/prometheus/node-exporter",
    "recorder": "/usr/local/libexec/halite/alert-recorder",
    "recorder_dir": "/var/lib/halite-alerts",
    "postgres_exporter_password": "/etc/prometheus/postgres-exporter.password",
    "pgbouncer_exporter_pgpass": "/etc/halite/pgbouncer-exporter.pgpass",
    "pgbouncer_exporter": "/usr/local/libexec/halite/pgbouncer-exporter",
    "backup_metrics": "/usr/local/libexec/halite/backup-metrics",
    "cert_metrics": "/usr/local/libexec/halite/cert-metrics",
    "dashboard_root": "/usr/share/halite-dashboard",
}

#: Prometheus's units for durations, in seconds.
_PROM_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def prom_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``26h`` (one unit, as the model allows)."""
    unit = "ms" if duration.endswith("ms") else duration[-1]
    value = int(duration[:-len(unit)]) * _PROM_UNITS[unit]
    return int(value) if float(value).is_integer() else value


def scrape_jobs(data: dict) -> list[dict]:
    """Prometheus's scrape jobs: one per exporter, its targets the hosts of the roles that run it.

    Each target is ``{"host", "roles", "address"}`` (the host's cluster address and the
    exporter's port); ``roles`` is ``,db,`` style so a rule can match one role with a regex.
    ``scheme`` is https for Patroni's API and etcd when their link is encrypted, with
    ``tls_config`` (halite's CA; for etcd, which asks every client for one, a certificate
    and key from halite's CA too: paths as on a host of the topology), else http and None.
    """
    on = tls_on(data)
    tls = {"patroni": {"ca_file": TLS_PATHS["ca"]} if on["patroni_api"] else None,
           "etcd": {"ca_file": TLS_PATHS["ca"], "cert_file": TLS_PATHS["cert"],
                    "key_file": TLS_PATHS["keys"]["prometheus"]}
           if on["etcd"] else None}
    topo, ports = data["topology"], data["monitoring"]["ports"]
    every = list(topo["hosts"])
    db, haproxy = hosts_with_role(topo, "db"), hosts_with_role(topo, "haproxy")
    jobs = [
        ("node", every, ports["node_exporter"], "/metrics"),
        ("postgres", db, ports["postgres_exporter"], "/metrics"),
        ("pgbouncer", db, ports["pgbouncer_exporter"], "/metrics"),
        ("patroni", db, data["patroni"]["restapi"]["port"], "/metrics"),
        ("etcd", db, data["etcd"]["client_port"], "/metrics"),
        ("haproxy", haproxy, data["haproxy"]["stats_port"], "/metrics"),
    ]
    out = [{"name": name, "metrics_path": path, "scheme": "https" if tls.get(name) else "http",
            "tls_config": tls.get(name),
            "targets": [{"host": h, "roles": "," + ",".join(topo["hosts"][h]["roles"]) + ",",
                         "address": f"{cluster_address(topo, h)}:{port}"} for h in hosts]}
           for name, hosts, port, path in jobs if hosts]
    for job in out:
        if job["name"] == "haproxy":
            # the stats page asks for a login (haproxy.stats_user/stats_password): Prometheus
            # reads the password from a file on its host, never from prometheus.yml
            job["basic_auth"] = {"username": data["haproxy"]["stats_user"],
                                 "password_file": MONITORING_PATHS["haproxy_stats_password"]}
    return out


def exporters_view(data: dict, host: str) -> dict:
    """What monitoring.exporters lays down on ``host``: node-exporter everywhere (on the
    host's cluster address, where Prometheus scrapes it), PostgreSQL's and PgBouncer's
    exporters on db hosts, with the ``users.monitor`` login (its password in a file of its
    own: the postgres exporter reads ``DATA_SOURCE_PASS_FILE``, the PgBouncer exporter, a
    libpq client, a ``PGPASSFILE``)."""
    from halite import formats

    topo, ports = data["topology"], data["monitoring"]["ports"]
    addr, roles = cluster_address(topo, host), topo["hosts"][host].get("roles") or []
    paths = MONITORING_PATHS
    out: dict = {"node_args": f"--web.listen-address={addr}:{ports['node_exporter']} "
                              f"--collector.textfile.directory={paths['textfile_dir']}",
                 "backup_metrics": "backup" in roles,
                 # the host's certificates of halite's CA (salt/tls): their end, for the expiry rule
                 "cert_files": [TLS_PATHS["cert"], TLS_PATHS["ca"]] if set(TLS_ROLES) & set(roles) else []}
    if "db" in roles:
        mon = data["users"]["monitor"]
        # the loopback in clear text (pg_hba's 127.0.0.1 line), scram-sha-256
        out["postgres_env"] = "".join([
            "# Managed by Salt (halite monitoring.exporters)\n",
            formats.systemd_env_line("DATA_SOURCE_URI", f"127.0.0.1:{data['postgresql']['port']}/postgres"
                                                        "?sslmode=disable"),
            formats.systemd_env_line("DATA_SOURCE_USER", mon["username"]),
            formats.systemd_env_line("DATA_SOURCE_PASS_FILE", paths["postgres_exporter_password"]),
            formats.systemd_env_line("ARGS", f"--web.listen-address={addr}:{ports['postgres_exporter']}"),
        ])
        out["postgres_password"] = mon["password"]
        # PgBouncer's unix socket (no TLS there): the admin console's SHOW commands
        out["pgbouncer_environment"] = {
            "HOST": addr, "PORT": str(ports["pgbouncer_exporter"]), "PGBOUNCER_PORT": str(data["pgbouncer"]["port"]),
            "PGBOUNCER_USER": mon["username"], "PGPASSFILE": paths["pgbouncer_exporter_pgpass"]}
        out["pgbouncer_pgpass"] = formats.pgpass_line("*", data["pgbouncer"]["port"], "pgbouncer",
                                                      mon["username"], mon["password"])
    return out


def alertmanager_view(data: dict) -> dict:
    """Alertmanager's one receiver: ``monitoring.webhook_url``, or halite's recorder on the
    monitoring host's loopback (it keeps every notification, one JSON line each)."""
    ports = data["monitoring"]["ports"]
    url = data["monitoring"]["webhook_url"]
    return {"webhook_url": url or f"http://127.0.0.1:{ports['recorder']}/alerts",
            "recorder": url is None,
            "listen": f"127.0.0.1:{ports['alertmanager']}",
            "recorder_listen": ["127.0.0.1", ports["recorder"]]}


def prometheus_url(data: dict) -> str | None:
    """Prometheus as the control machine reaches it: the monitoring host's address on a
    network the control machine is on (the edge in the lab), or None without a monitoring
    host."""
    topo = data["topology"]
    host = monitoring_host_of(topo)
    if host is None:
        return None
    addrs = topo["hosts"][host]["addresses"]
    shared = [addrs[n] for n, spec in topo["networks"].items() if spec.get("control_address") and n in addrs]
    addr = shared[0] if shared else cluster_address(topo, host)
    return f"http://{addr}:{data['monitoring']['ports']['prometheus']}"


def dashboard_url(data: dict) -> str | None:
    """The dashboard page as the control machine reaches it (see :func:`prometheus_url`)."""
    prom = prometheus_url(data)
    if prom is None:
        return None
    return prom.rsplit(":", 1)[0] + f":{data['monitoring']['ports']['dashboard']}/"


def monitoring_server_view(data: dict, host: str) -> dict:
    """What monitoring.server lays down on the monitoring host: Prometheus (listening on
    every address: the control machine reads it on the edge network, the firewall admits
    no one else), Alertmanager on the loopback, the rules, the retention."""
    ports = data["monitoring"]["ports"]
    return {
        "prometheus_args": (f"--config.file={MONITORING_PATHS['prometheus_yml']} "
                            f"--web.listen-address=0.0.0.0:{ports['prometheus']} "
                            f"--storage.tsdb.retention.time={data['monitoring']['retention']}"),
        # no cluster of Alertmanagers: one host, no gossip port
        "alertmanager_args": (f"--config.file={MONITORING_PATHS['alertmanager_yml']} "
                              f"--web.listen-address=127.0.0.1:{ports['alertmanager']} "
                              "--cluster.listen-address="),
        "alertmanager": alertmanager_view(data),
        "prometheus_url": f"http://127.0.0.1:{ports['prometheus']}",
        "rules": monitoring(data),
        # the dashboard page: nginx serves it and passes /api/v1/ (GET only) to Prometheus
        "dashboard": {"listen": str(ports["dashboard"]), "root": MONITORING_PATHS["dashboard_root"],
                      "prometheus": f"127.0.0.1:{ports['prometheus']}"},
    }


def monitoring(data: dict) -> dict:
    """Everything the alert rules and prometheus.yml print, derived once.

    Thresholds come from ``monitoring.thresholds``; the replica lag limit
    defaults to Patroni's ``maximum_lag_on_failover`` (a replica further behind
    could not be promoted), PgBouncer's client limit is a share of its
    ``max_client_conn`` and the backup age is in seconds (PromQL compares numbers).
    """
    mon, dcs = data["monitoring"], data["patroni"]["dcs"]
    th = mon["thresholds"]
    lag = th["replica_lag_bytes"]
    return {
        "scope": data["patroni"]["scope"],
        "synchronous_mode": bool(dcs.get("synchronous_mode")),
        "write_proxy": HAPROXY_WRITE_PROXY,
        # the command and ports named by the runbook lines
        "patronictl": (f"{platforms.COMMON_PATHS['patroni_venv']}/bin/patronictl "
                       f"-c {platforms.COMMON_PATHS['patroni_conf']}"),
        # a member's /primary check by hand, as HAProxy asks it
        "patroni_primary_curl": (f"curl -s --cacert {TLS_PATHS['ca']} https://MEMBER:{data['patroni']['restapi']['port']}/primary"
                                 if tls_on(data)["patroni_api"]
                                 else f"curl -s http://MEMBER:{data['patroni']['restapi']['port']}/primary"),
        "ports": {"haproxy_write": data["haproxy"]["write_port"], "haproxy_stats": data["haproxy"]["stats_port"],
                  "pgbouncer": data["pgbouncer"]["port"], "patroni": data["patroni"]["restapi"]["port"],
                  "etcd_peer": data["etcd"]["peer_port"]},
        "scrape_interval": mon["scrape_interval"],
        "for": dict(mon["for"]),
        "thresholds": {
            "replica_lag_bytes": dcs["maximum_lag_on_failover"] if lag is None else lag,
            "etcd_db_quota_percent": th["etcd_db_quota_percent"],
            "pgbouncer_waiting_clients": th["pgbouncer_waiting_clients"],
            "pgbouncer_client_limit": data["pgbouncer"]["max_client_conn"] * th["pgbouncer_client_percent"] // 100,
            "pgbouncer_client_percent": th["pgbouncer_client_percent"],
            "disk_used_percent": th["disk_used_percent"],
            "clock_offset_seconds": th["clock_offset_seconds"],
            "backup_max_age": th["backup_max_age"],
            "backup_max_age_seconds": prom_seconds(th["backup_max_age"]),
            "archive_window": mon["for"]["archive"],
            # how long PatroniLeaderChanged stays firing after a new timeline
            "leader_change_window": "5m",
            # a certificate inside the window in which the next apply would renew it: no apply came
            "certificate_days": data["tls"]["renew_before_days"],
            "certificate_seconds": data["tls"]["renew_before_days"] * 86400,
        },
        "jobs": scrape_jobs(data),
        "alertmanager": f"127.0.0.1:{data['monitoring']['ports']['alertmanager']}",
    }


def _get(data: dict, dotted: str):
    cur = data
    for part in dotted.split("."):
        cur = cur[part]
    return cur


def _get_or_none(data: dict, dotted: str):
    try:
        return _get(data, dotted)
    except KeyError:
        return None


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    cur = data
    for part in parents:
        cur = cur[part]
    cur[last] = value


#: Secrets that exist only with a backup host in the topology.
BACKUP_SECRETS = ("users.backup.password", "backup.cipher_pass")
#: Secrets that exist only with a monitoring host in the topology.
MONITORING_SECRETS = ("users.monitor.password",)


def optional_secrets(data: dict) -> set[str]:
    """The secrets ``data``'s topology has no use for (no backup host, no monitoring host)."""
    out = set() if backup_host(data) else set(BACKUP_SECRETS)
    if not monitoring_host_of(data["topology"]):
        out |= set(MONITORING_SECRETS)
    return out


def secrets_for(roles: list[str], data: dict | None = None) -> list[str]:
    """The secrets (dotted keys) a host with these roles receives (in ``data``'s topology)."""
    keys = [key for key, need in SECRET_ROLES.items() if need & set(roles)]
    if data is not None:
        unused = optional_secrets(data)
        keys = [k for k in keys if k not in unused]
    return keys


def strip_secrets(data: dict, roles: list[str], mask: bool = False) -> dict:
    """``data`` without the secrets ``roles`` do not need (or with all masked)."""
    out = copy.deepcopy(data)
    keep = set() if mask else set(secrets_for(roles))
    for key in SECRET_ROLES:
        if key in keep:
            continue
        *parents, last = key.split(".")
        parent = _get(out, ".".join(parents))
        if mask:
            parent[last] = MASK
        else:
            parent.pop(last, None)
    return out


def login_user(topo: dict, host: str) -> str:
    """The user the control machine logs in as on ``host``: its own ``user``, else
    ``topology.access.user`` (root). Any other than root works through sudo, and root's own
    SSH login stays refused (``base.ssh``)."""
    return topo["hosts"][host].get("user") or (topo.get("access") or {}).get("user") or "root"


def host_platform(data: dict, host: str) -> dict:
    """The host's OS family, release (the topology's or the family's default),
    that release's major (the ``osmajorrelease`` grain) and the PostgreSQL
    major whose packages it installs (:func:`platforms.host_postgresql`)."""
    entry = data["topology"]["hosts"][host]
    family = entry.get("os_family", "Debian")
    release = platforms.release_of(family, entry.get("os_release"))
    return {
        "os_family": family,
        "os_release": release,
        "os_major": platforms.release_facts(family, release)["major"],
        "postgresql_version": platforms.host_postgresql(family, release, entry.get("roles") or [],
                                                        data["postgresql"]["version"],
                                                        (data.get("legacy") or {}).get("version")),
    }


def host_sysctl(data: dict, host: str) -> dict:
    """The kernel settings of ``host``: pillar ``sysctl`` of each of its roles, merged in
    the order of the roles (a later role's value wins)."""
    merged: dict = {}
    for role in data["topology"]["hosts"][host].get("roles") or []:
        merged.update(data.get("sysctl", {}).get(role) or {})
    return merged


def pgbouncer_nofile(data: dict) -> int:
    """PgBouncer's open-file limit (systemd ``LimitNOFILE``): one descriptor per client
    (``max_client_conn``), one per server connection (``default_pool_size`` for each
    database and each of the logins that come through it: the site, the exporter, the auth
    user, the admin), and 1024 for its listeners, log, TLS files and the unexpected."""
    pgb = data["pgbouncer"]
    return pgb["max_client_conn"] + pgb["default_pool_size"] * len(pgb["databases"]) * 4 + 1024


def host_view(data: dict, host: str) -> dict:
    """What ``host`` alone needs to know about itself."""
    topo = data["topology"]
    entry = topo["hosts"][host]
    roles = entry.get("roles") or []
    view = {
        "name": host,
        "roles": roles,
        **host_platform(data, host),
        "address": cluster_address(topo, host),
        "login_user": login_user(topo, host),
        "states": host_states(topo, host),
        "firewall": firewall_rules(data, host),
        "secrets": secrets_for(roles, data),
        "sysctl": host_sysctl(data, host),
    }
    # secret-bearing strings, escaped once in Python (halite.formats); each
    # host gets the ones its roles use, so no secret travels in a DSN it may not hold
    from halite import formats

    dsns = formats.web_dsns(data, host)
    wanted = set()
    if "app" in roles:
        wanted |= {"legacy", "cluster_write", "cluster_read", "patroni_urls"}
    if "db" in roles:
        wanted |= {"move_source", "move_target"}
    view["dsn"] = {k: v for k, v in dsns.items() if k in wanted}
    if "haproxy" in roles:
        # haproxy.roundtrip's gate, through this host's own ports (its password in PGPASSWORD)
        login = [("dbname", data["users"]["app"]["database"]), ("user", data["users"]["app"]["username"])]
        view["roundtrip_dsn"] = {
            side: formats.conninfo(*formats.cluster_options(data, "127.0.0.1", data["haproxy"][f"{side}_port"]), *login)
            for side in ("write", "read")}
    if "backup" in roles:
        # the restore points, read from whichever member answers (halite.restore_points), with
        # the backup host's read-only login: a libpq service file and postgres's .pgpass
        # (salt/backup/repo.sls; pgbackrest.RESTORE_POINTS_SERVICE)
        u = data["users"]
        members = [cluster_address(topo, h) for h in etcd_hosts(topo)]
        port = data["postgresql"]["port"]
        server = formats.server_options(data, "postgresql", ",".join(members), port)
        view["restore_points_service"] = [
            "# Managed by Salt (halite backup.repo): the cluster's restore points, read by the drill",
            "[halite-restore-points]", *[f"{key}={value}" for key, value in server],
            f"dbname={u['app']['database']}", f"user={u['backup']['username']}", "connect_timeout=5", ""]
        view["restore_points_pgpass"] = "".join(
            formats.pgpass_line(m, port, u["app"]["database"], u["backup"]["username"], u["backup"]["password"]) + "\n"
            for m in members)
    if set(TLS_ROLES) & set(roles):
        view["tls"] = tls_material(data, host)
    if "app" in roles:
        view["site"] = site_view(data, host)
    if "haproxy" in roles:
        view["haproxy_stats"] = haproxy_stats(data, host)
    if backup_host(data) and {"db", "backup"} & set(roles):
        view["pgbackrest"] = pgbackrest_view(data, host)
        view["restore_command"] = archive_commands(data)["restore_command"]
    if "db" in roles:
        view["etcd"] = etcd_view(data, host)
        view["patroni_api"] = patroni_api_view(data)
        view["pg_hba"] = pg_hba(data)
        view["postgresql_tls"] = postgresql_tls(data)
        view["pgbouncer_tls"] = pgbouncer_tls(data)
        view["patroni_dcs"] = patroni_dcs(data)
        view["pgbouncer_userlist"] = formats.pgbouncer_userlist(data)
        view["pgbouncer_nofile"] = pgbouncer_nofile(data)
    if "haproxy" in roles:
        view["haproxy_backends"] = haproxy_backends(data)
    if "legacy_db" in roles:
        view["legacy_hba_sources"] = legacy_hba_sources(data)
    if monitoring_host_of(topo):
        view["exporters"] = exporters_view(data, host)
        if "db" in roles:
            view["pgbouncer_stats_users"] = [data["users"]["pgbouncer_auth"]["username"],
                                             data["users"]["monitor"]["username"]]
    if "monitoring" in roles:
        view["monitoring"] = monitoring_server_view(data, host)
    return view


#: Where halite's CA certificate and each host's own certificate and key live on the host
#: (salt/tls): ``key`` is root's (nginx, HAProxy read it before dropping privileges); a
#: service running as its own user gets its own copy, ``keys[user]``, readable by it alone.
TLS_PATHS = {
    "dir": "/etc/halite/tls",
    "ca": "/etc/halite/tls/ca.crt",
    "cert": "/etc/halite/tls/host.crt",
    "key": "/etc/halite/tls/host.key",
    "keys": {"postgres": "/etc/halite/tls/postgres.key", "etcd": "/etc/halite/tls/etcd.key",
             "prometheus": "/etc/halite/tls/prometheus.key"},
}

#: The roles whose hosts hold a certificate from halite's CA (servers and clients of TLS links).
TLS_ROLES = ("db", "haproxy", "app", "backup", "monitoring")

#: The links halite can encrypt (model ``tls.unsafe_plaintext`` names them).
TLS_LINKS = ("etcd", "patroni_api", "postgresql", "pgbouncer", "site")


def tls_on(data: dict) -> dict:
    """``{link: True}`` for each link encrypted, ``False`` for those the pillar leaves in
    clear text with ``tls.unsafe_plaintext``."""
    off = set(data["tls"]["unsafe_plaintext"])
    return {link: link not in off for link in TLS_LINKS}


def tls_clients(data: dict) -> dict:
    """What root's clients on a db host (halite's modules, etcdctl, run by orchestrations that
    pass these on: salt-ssh gives direct calls no pillar) need: etcd's client URLs, the files
    to show etcd (root's key; None in clear text) and the CA to check Patroni's API with (None
    in clear text)."""
    topo, on = data["topology"], tls_on(data)
    scheme = "https" if on["etcd"] else "http"
    return {
        "etcd_urls": [f"{scheme}://{cluster_address(topo, m)}:{data['etcd']['client_port']}" for m in etcd_hosts(topo)],
        "etcd": {"cacert": TLS_PATHS["ca"], "cert": TLS_PATHS["cert"], "key": TLS_PATHS["key"]} if on["etcd"] else None,
        "patroni_api_ca": TLS_PATHS["ca"] if on["patroni_api"] else None,
    }


def service_name(data: dict) -> str:
    """The cluster's name as clients verify it through HAProxy (libpq ``host`` with
    ``hostaddr``): in every db host's certificate."""
    return f"{data['patroni']['scope']}.{data['topology']['domain']}"


def postgresql_tls(data: dict) -> dict:
    """PostgreSQL's own TLS settings on a db host (patroni.yml's local ``postgresql.parameters``),
    and the options of Patroni's connections (superuser, replication, rewind) that verify
    the server they reach against halite's CA. Both empty with ``postgresql`` in
    ``tls.unsafe_plaintext``.

    The server's key is postgres's copy (``TLS_PATHS["keys"]["postgres"]``, salt/postgresql/tls.sls):
    PostgreSQL refuses a key readable by others. ``ssl_ca_file`` lets a client show a certificate
    from halite's CA; none is required (pg_hba asks for scram-sha-256, not ``cert``).
    """
    if not tls_on(data)["postgresql"]:
        return {"parameters": {}, "client": {}}
    paths = TLS_PATHS
    return {
        "parameters": {"ssl": "on", "ssl_cert_file": paths["cert"], "ssl_key_file": paths["keys"]["postgres"],
                       "ssl_ca_file": paths["ca"], "ssl_min_protocol_version": "TLSv1.2"},
        # the leader's connect_address (an IP address) is in its certificate
        "client": {"sslmode": "verify-full", "sslrootcert": paths["ca"]},
    }


def pgbouncer_tls(data: dict) -> list[list[str]]:
    """PgBouncer's TLS settings on a db host, as ``[key, value]`` lines of pgbouncer.ini.

    Clients reaching it over TCP must use TLS (``client_tls_sslmode = require``: HAProxy passes
    their TLS through; the unix socket, for local administration, has none); it verifies the
    PostgreSQL it connects to (the host's own address, in the host's certificate) when the
    ``postgresql`` link is under TLS. PgBouncer runs as postgres and reads postgres's copy
    of the key. Its default ``*_tls_protocols`` ("secure") are TLS 1.2 and 1.3, as PostgreSQL's.
    Empty with both links in ``tls.unsafe_plaintext``.
    """
    on, paths = tls_on(data), TLS_PATHS
    lines: list[list[str]] = []
    if on["pgbouncer"]:
        lines += [["client_tls_sslmode", "require"], ["client_tls_cert_file", paths["cert"]],
                  ["client_tls_key_file", paths["keys"]["postgres"]], ["client_tls_ca_file", paths["ca"]]]
    if on["postgresql"]:
        lines += [["server_tls_sslmode", "verify-full"], ["server_tls_ca_file", paths["ca"]]]
    return lines


def cert_names(data: dict, host: str) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses in ``host``'s certificate: its name, its name in the
    domain, every address, for a db host the cluster's :func:`service_name`, and the
    loopback (``localhost``, 127.0.0.1) that local clients dial."""
    topo = data["topology"]
    entry = topo["hosts"][host]
    names = [host, f"{host}.{topo['domain']}"]
    if "db" in (entry.get("roles") or []):
        names.append(service_name(data))
    # local clients (halite's modules, patronictl, Patroni's callbacks) dial 127.0.0.1
    return [*names, "localhost"], sorted(set(entry["addresses"].values())) + ["127.0.0.1"]


def state_dir(data: dict):
    """The control machine's folder of this install's generated material (halite.pki.state_dir)."""
    from halite import pki

    return pki.state_dir(data["topology"]["name"])


def control_ca(data: dict):
    """halite's CA certificate on the control machine (``ca.crt`` in :func:`state_dir`), for
    clients running there (the failover runner, the lab tests) to verify the cluster."""
    return state_dir(data) / "ca.crt"


def tls_material(data: dict, host: str) -> dict:
    """halite's CA certificate and ``host``'s own certificate and key (issued on first use;
    the CA's key stays on the control machine)."""
    from halite import pki

    topo = data["topology"]
    where = state_dir(data)
    ca = pki.ensure_ca(where, topo["name"])
    names, addresses = cert_names(data, host)
    tls = data["tls"]
    cert, key = pki.host_cert(where, host, names, addresses, days=tls["cert_days"],
                              renew_before_days=tls["renew_before_days"])
    return {"ca": ca, "cert": cert, "key": key}


#: How each secret is made when the settings give none: (random characters, may be nasty,
#: ASCII only, spaces at both ends when nasty). Nasty (``secrets.style``) only where every
#: reader escapes it (halite.formats); pgBackRest's passphrase stays plain (no quoting there).
GENERATED_SECRETS: dict[str, tuple[int, bool, bool, bool]] = {
    **{f"users.{u}.password": (32, True, False, False) for u in
       ("superuser", "replication", "rewind", "pgbouncer_auth", "app", "legacy_move", "backup")},
    # the postgres exporter (0.11) turns its URL into a key=value DSN its own parser then refuses
    # when the password holds a quote or a backslash ("malformed dsn", seen in the lab): plain
    "users.monitor.password": (32, False, False, False),
    # Patroni's own client encodes Basic authentication as latin-1
    "patroni.restapi.password": (32, True, True, False),
    # site.env and the site keep it exactly, spaces included
    "web.secret_key": (48, True, False, True),
    "backup.cipher_pass": (48, False, False, False),
    # HAProxy's stats login: plain (a `stats auth user:password` word)
    "haproxy.stats_password": (32, False, False, False),
}


#: The site's templates (web/halite_web/templates): the CSP allows their inline scripts by hash.
SITE_TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "halite_web" / "templates"

#: HSTS for a year. No ``includeSubDomains``: halite's certificate names the app host only,
#: and other hosts under the same name (the cluster's domain) may serve plain HTTP; no
#: ``preload``: the certificate comes from halite's own CA, which browsers at large do not
#: trust, so the name must never enter the browsers' built-in HTTPS-only list.
SITE_HSTS = "max-age=31536000"

#: TLS versions and TLS 1.2 ciphers nginx offers (Mozilla's "intermediate" profile,
#: without DHE: no dhparam file is laid down). TLS 1.3 suites are OpenSSL's defaults.
SITE_TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
SITE_TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

_INLINE_SCRIPT = re.compile(r"<script(\s[^>]*)?>(.*?)</script>", re.S)


def site_script_hashes(templates: Path = SITE_TEMPLATES) -> list[str]:
    """CSP hash sources (``'sha256-...'``) of the inline scripts in the site's templates.

    Only scripts the browser runs count: one with ``src=`` or a data block
    (``type="application/json"``) is not inline code. A script must hold no template
    expression (its text is then the same on every page), or its hash would not match.

    :param templates: the folder of the site's Jinja templates.
    :returns: sorted, unique ``'sha256-<base64>'`` strings.
    """
    out = set()
    for path in sorted(templates.glob("*.html")):
        for attrs, body in _INLINE_SCRIPT.findall(path.read_text(encoding="utf-8")):
            if "src=" in attrs or re.search(r"type\s*=\s*[\"']?application/(ld\+)?json", attrs):
                continue
            if "{{" in body or "{%" in body:
                raise ValueError(f"{path.name}: an inline script holds a template expression; "
                                 "its CSP hash would differ per page")
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
            out.add(f"'sha256-{digest}'")
    return sorted(out)


def site_csp() -> str:
    """The site's Content-Security-Policy: everything from the site itself only (its
    stylesheet, its forms), inline scripts by hash only (no ``'unsafe-inline'``), no
    plugins, no framing, no ``<base>`` elsewhere. The templates load nothing from
    another origin and carry no ``style=`` attribute or ``<style>`` element."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(site_script_hashes()),
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def site_address(data: dict, host: str) -> str:
    """The address nginx serves the site on: ``host``'s on ``web.listen_network``
    (the edge), else its cluster address."""
    topo = data["topology"]
    return topo["hosts"][host]["addresses"].get(data["web"]["listen_network"]) or cluster_address(topo, host)


def site_url(data: dict, host: str | None = None) -> str:
    """The site's URL as its clients use it: ``https://<edge address>/`` with TLS on the
    site (the host's certificate names that address), else ``http://...``; the port only
    when it is not the scheme's own.

    :param host: an app host; default the first one.
    :raises ValueError: no host has the role app.
    """
    apps = hosts_with_role(data["topology"], "app")
    if host is None:
        if not apps:
            raise ValueError("no host has the role 'app'")
        host = apps[0]
    tls = tls_on(data)["site"]
    scheme, port, default = ("https", data["web"]["https_port"], 443) if tls else ("http", data["web"]["http_port"], 80)
    addr = site_address(data, host)
    return f"{scheme}://{addr}/" if port == default else f"{scheme}://{addr}:{port}/"


def site_ca(data: dict):
    """The CA file a client on the control machine verifies the site with (halite's CA,
    :func:`state_dir`), or None when the site is plain HTTP."""
    return state_dir(data) / "ca.crt" if tls_on(data)["site"] else None


def site_ssl_context(data: dict):
    """An ``ssl.SSLContext`` for the site's clients on the control machine (halite's CA
    only, names checked), or None when the site is plain HTTP."""
    import ssl

    ca = site_ca(data)
    return ssl.create_default_context(cafile=str(ca)) if ca else None


def site_view(data: dict, host: str) -> dict:
    """What nginx on the app host ``host`` prints (salt/web/files/nginx.conf.jinja).

    With TLS on the site: HTTPS on ``web.https_port`` with the host's certificate,
    plain HTTP on ``web.http_port`` answering 301 to the same host and path over
    https, HSTS on the https answers. Without (``tls.unsafe_plaintext: [site]``):
    the site on plain HTTP, no redirect, no HSTS. Either way: the security headers
    on every answer and ``limit_req`` per client address.
    """
    web = data["web"]
    tls = tls_on(data)["site"]
    https = web["https_port"]
    headers = [["Content-Security-Policy", site_csp()], ["X-Frame-Options", "DENY"],
               ["X-Content-Type-Options", "nosniff"], ["Referrer-Policy", "strict-origin-when-cross-origin"]]
    return {
        "address": site_address(data, host),
        "http_port": web["http_port"],
        "https_port": https,
        "tls": tls,
        "url": site_url(data, host),
        # nginx variables: the same host (without the port it was asked on) and the same path
        "redirect": f"https://$host{'' if https == 443 else f':{https}'}$request_uri" if tls else None,
        "headers": headers,
        "hsts": SITE_HSTS if tls else None,
        "cert": TLS_PATHS["cert"],
        "key": TLS_PATHS["key"],
        "ca": TLS_PATHS["ca"],
        "protocols": SITE_TLS_PROTOCOLS,
        "ciphers": SITE_TLS_CIPHERS,
        "rate_limit": {"zone": "site", "per_second": web["rate_limit"]["per_second"],
                       "burst": web["rate_limit"]["burst"]},
    }


def haproxy_stats(data: dict, host: str) -> dict:
    """HAProxy's stats page on ``host``: bound to the host's cluster address only, behind
    basic auth (``haproxy.stats_user``/``stats_password``, the password generated per
    install unless given). ``auth`` is the ``stats auth`` argument, quoted for HAProxy
    (:func:`halite.formats.haproxy_word`); ``data`` must hold the password
    (:func:`with_generated`)."""
    from halite import formats

    h = data["haproxy"]
    return {"bind": f"{cluster_address(data['topology'], host)}:{h['stats_port']}",
            "auth": formats.haproxy_word(f"{h['stats_user']}:{h['stats_password']}"),
            # the same login for HAProxy's Prometheus endpoint (/metrics), through a userlist
            "userlist_user": (f"user {formats.haproxy_word(h['stats_user'])} "
                              f"insecure-password {formats.haproxy_word(h['stats_password'])}")}


def control_client_cert(data: dict) -> tuple:
    """The control machine's own client certificate and key files (issued by halite's CA on
    first use, in its state folder): what the failover runner shows Patroni's REST API,
    which asks unsafe calls for a client certificate.

    :returns: ``(cert path, key path)``.
    """
    from halite import pki

    where = state_dir(data)
    pki.ensure_ca(where, data["topology"]["name"])
    addresses = [n["control_address"] for n in data["topology"]["networks"].values() if n.get("control_address")]
    pki.host_cert(where, "control", ["control"], addresses, days=data["tls"]["cert_days"],
                  renew_before_days=data["tls"]["renew_before_days"])
    return where / "hosts" / "control.crt", where / "hosts" / "control.key"


def with_generated(data: dict, roles: list[str] | None = None) -> dict:
    """``data`` with every secret the settings leave empty filled in (those ``roles`` need,
    or all with ``roles`` None).

    They are made on the control machine on first use (:func:`halite.generated.secret`,
    style ``secrets.style``) and kept in its state folder; nothing generated is in git.
    """
    need = secrets_for(roles, data) if roles is not None else [
        k for k in SECRET_ROLES if k not in optional_secrets(data)]
    if data["backup"]["cipher_type"] == "none":
        need = [k for k in need if k != "backup.cipher_pass"]
    missing = [k for k in need if _get_or_none(data, k) is None]
    if not missing:
        return data
    from halite import generated

    out = copy.deepcopy(data)
    where = state_dir(data)
    style = data["secrets"]["style"]
    for key in missing:
        length, nasty_ok, ascii_only, padded = GENERATED_SECRETS[key]
        _set(out, key, generated.secret(where, key, length=length, style=style if nasty_ok else "plain",
                                        ascii_only=ascii_only, padded=padded))
    return out


#: Where a host keeps the repository keys halite lays down (apt's own choice for local keys).
APT_KEYRINGS = "/etc/apt/keyrings"


def apt_keys(data: dict) -> dict:
    """The repository keys of ``packages.apt_keys``, read on the control machine:
    ``{name: {"path": /etc/apt/keyrings/<name>.asc, "text": the armored key}}``.

    :raises ConfigError: a key file cannot be read or holds no armored public key.
    """
    out = {}
    for name, src in sorted((data.get("packages") or {}).get("apt_keys", {}).items()):
        key = f"packages.apt_keys.{name}"
        try:
            text = Path(src).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(key, f"{src} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in text:
            raise ConfigError(key, f"{src} holds no armored OpenPGP public key (gpg --armor --export)")
        out[name] = {"path": f"{APT_KEYRINGS}/{name}.asc", "text": text}
    return out


def pillar_for(minion_id: str, data: dict) -> dict:
    """The pillar of one host (or of the control machine, for orchestrations).

    A host of the topology gets the settings, the secrets of its roles, its
    own view under ``host`` and its platform's packages, services and paths.
    Any other id (the control machine running ``salt-run``) gets the settings
    and the topology with no secret at all.
    """
    topo = data["topology"]
    roles = topo["hosts"][minion_id].get("roles") or [] if minion_id in topo["hosts"] else []
    data = with_generated(data, roles)
    out = strip_secrets(data, roles)
    out["addresses"] = {h: cluster_address(topo, h) for h in topo["hosts"]}
    out["pgbackrest_paths"] = dict(PGBACKREST_PATHS)
    out["tls_paths"] = copy.deepcopy(TLS_PATHS)
    out["monitoring_paths"] = dict(MONITORING_PATHS)
    out["tls_on"] = tls_on(data)
    out["tls_clients"] = tls_clients(data)
    out["service_name"] = service_name(data)
    # each host's PostgreSQL paths, for orchestrations that pass them to module functions
    # (salt-ssh gives a function called directly no pillar on the host)
    out["pg_paths"] = {}
    for h in topo["hosts"]:
        plat = host_platform(data, h)
        paths = platforms.resolve(plat["os_family"], plat["postgresql_version"])["paths"]
        out["pg_paths"][h] = {k: paths[k] for k in ("pg_datadir", "pg_bindir", "pg_socket_dir")}
    out["roles"] = {role: hosts_with_role(topo, role) for role in ROLE_STATES}
    out["beside_chain"] = beside_chain(topo)
    if minion_id in topo["hosts"]:
        out["host"] = host_view(data, minion_id)
        out.update(platforms.resolve(out["host"]["os_family"], out["host"]["postgresql_version"],
                                     data["legacy"]["cluster"]))
        out["container_virtual"] = list(platforms.CONTAINER_VIRTUAL)
        if out["host"]["os_family"] == "Debian":
            out["apt_keys"] = apt_keys(data)
        out["platform"] = platforms.host_facts(out["host"]["os_family"], out["host"]["os_release"], data)
    return {"halite": out}
