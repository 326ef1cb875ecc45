"""The configuration model (halite/model.py): every bad input is refused with
one line per problem, naming the key, the value and what is allowed; all
problems come at once; nothing, however wrong, ends in a traceback.

Each case is a small mutation of the shipped description (pillar/topology.yaml,
lab.yaml; not a local.yaml) and expects exactly one problem.
"""
from __future__ import annotations

import copy
import random

import pytest

from halite import config, model

#: secrets given in the settings (none are shipped: halite generates them), for the cases to mutate
GIVEN_SECRETS = {
    "users": {k: {"password": f"given-{k}-secret"} for k in model.Users.model_fields},
    "patroni": {"restapi": {"password": "given-rest-secret"}},
    "web": {"secret_key": "given-web-secret"},
}
SHIPPED = config.deep_merge(config.raw(topology_file=config.PILLAR_DIR / "topology.yaml",
                                       settings_files=[config.PILLAR_DIR / "lab.yaml"]), GIVEN_SECRETS)


def base() -> dict:
    return copy.deepcopy(SHIPPED)


def put(path: str, value):
    """A mutation setting a dotted key (missing sections are created)."""
    def mutate(d):
        *parents, last = path.split(".")
        cur = d
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[last] = value
        return d
    return mutate


def drop(path: str):
    def mutate(d):
        *parents, last = path.split(".")
        cur = d
        for part in parents:
            cur = cur[part]
        del cur[last]
        return d
    return mutate


def do(fn):
    """A mutation written as a statement on the description ``d``."""
    def mutate(d):
        fn(d)
        return d
    return mutate


def services(*extra: dict, first: dict | None = None):
    """firewall.services: the defaults, the first one changed, extra entries appended."""
    def mutate(d):
        table = model._default_services()
        if first is not None:
            table[0] = {**table[0], **first}
        d.setdefault("firewall", {})["services"] = table + list(extra)
        return d
    return mutate


def hosts(d) -> dict:
    return d["topology"]["hosts"]


ALLOWED_ROLES = "'jump', 'db', 'haproxy', 'app', 'legacy_db', 'backup' or 'monitoring'"
DNS_LABEL = "a host name is a DNS label"
PG_NAME = "a PostgreSQL name here is lower-case letters, digits and '_'"
NAME = "a name is letters, digits, '_', '.' and '-'"
IPV6 = "IPv6 is not supported yet"

# (id, mutation, key, words that must all appear in the one message)
CASES = [
    # --- types, at several levels
    ("port-as-string", put("haproxy.write_port", "5000"), "haproxy.write_port", ["'5000'", "expected an integer"]),
    ("port-as-float", put("etcd.client_port", 2379.0), "etcd.client_port", ["2379.0", "expected an integer"]),
    ("port-as-boolean", put("etcd.client_port", True), "etcd.client_port", ["true (a boolean)", "expected an integer"]),
    ("password-as-number", put("users.app.password", 1234), "users.app.password", ["1234", "expected a string"]),
    ("roles-as-string", put("topology.hosts.db-01.roles", "db"), "topology.hosts.db-01.roles",
     ["'db' (a string)", "expected a list"]),
    ("ntp-servers-as-string", put("time.servers", "pool.ntp.org"), "time.servers",
     ["'pool.ntp.org'", "expected a list"]),
    ("service-ports-as-strings", services(first={"ports": ["2379"]}), "firewall.services[0].ports[0]",
     ["'2379'", "expected an integer"]),
    ("dcs-flag-as-string", put("patroni.dcs.postgresql.use_pg_rewind", "true"),
     "patroni.dcs.postgresql.use_pg_rewind", ["'true'", "expected true or false"]),
    ("profile-as-string", put("patroni.profiles", {**model._default_profiles(), "halite": "fast"}),
     "patroni.profiles.halite", ["'fast'", "expected a mapping"]),
    ("size-as-float", put("haproxy.replica_max_lag", 1.5), "haproxy.replica_max_lag",
     ["1.5", "a size is a number of bytes or a string such as 1MB"]),
    ("parameter-value-as-list", put("postgresql.parameters", {"work_mem": ["4MB"]}), "postgresql.parameters.work_mem",
     ["is a list", "a single value (string, number or boolean)"]),
    # --- YAML oddities: quoted yes, numbers as strings, keys that are numbers, empty values
    ("quoted-yes-for-a-boolean", put("etcd.keep_leader_off_primary", "yes"), "etcd.keep_leader_off_primary",
     ["'yes'", "expected true or false"]),
    ("version-as-string", put("postgresql.version", "15"), "postgresql.version",
     ["'15'", "allowed: 13, 14, 15, 16, 17 or 18"]),
    ("ttl-as-string", put("patroni.dcs.ttl", "30"), "patroni.dcs.ttl", ["'30'", "expected an integer"]),
    ("number-as-top-level-key", do(lambda d: d.__setitem__(5, 1)), "(top level)",
     ["key 5", "not a string", "keys are names"]),
    ("number-as-section-key", do(lambda d: d["patroni"].__setitem__(5, 1)), "patroni",
     ["key 5", "keys are names"]),
    ("number-as-host-name", do(lambda d: hosts(d).__setitem__(4, hosts(d).pop("db-03"))), "topology.hosts",
     ["key 4", "not a string"]),
    ("unquoted-yes-as-a-key", put("etcd", {True: 1}), "etcd", ["key True", "quote it"]),
    ("infinite-sysctl-value", put("sysctl", {"db": {"vm.swappiness": float("inf")}}), "sysctl.db.vm.swappiness",
     ["is inf", "a finite number"]),
    ("empty-port", put("etcd.client_port", None), "etcd.client_port", ["is empty", "expected an integer"]),
    # an empty password (None) is no mistake: halite generates one (test_view)
    ("password-not-a-string", put("users.replication.password", ["a", "list"]), "users.replication.password",
     ["expected a string"]),
    ("empty-string-password", put("users.replication.password", ""), "users.replication.password",
     ["is empty", "must not be empty"]),
    ("empty-section", put("users", None), "users", ["is empty", "expected a mapping"]),
    ("empty-host", put("topology.hosts.db-01", None), "topology.hosts.db-01", ["is empty", "expected a mapping"]),
    ("empty-parameter", put("postgresql.parameters", {"work_mem": None}), "postgresql.parameters.work_mem",
     ["is empty", "a single value"]),
    # --- non-mappings where a mapping belongs
    ("section-a-number", put("haproxy", 5), "haproxy", ["is 5", "expected a mapping"]),
    ("topology-a-list", put("topology", []), "topology", ["is a list", "expected a mapping"]),
    ("whole-file-a-list", lambda d: [d], "(top level)", ["is a list", "expected a mapping of settings"]),
    ("whole-file-empty", lambda d: None, "(top level)", ["is empty", "expected a mapping of settings"]),
    ("networks-a-list", put("topology.networks", []), "topology.networks", ["is a list", "expected a mapping"]),
    ("service-a-number", services(5), f"firewall.services[{len(model._default_services())}]", ["is 5", "expected a mapping"]),
    ("services-a-mapping", put("firewall.services", {"ssh": [22]}), "firewall.services",
     ["is a mapping", "expected a list"]),
    ("sysctl-role-a-number", put("sysctl", {"db": 5}), "sysctl.db", ["is 5", "expected a mapping"]),
    # --- empty lists
    ("no-hosts", put("topology.hosts", {}), "topology.hosts", ["is empty", "at least 1"]),
    ("host-without-roles", put("topology.hosts.db-01.roles", []), "topology.hosts.db-01.roles",
     ["is empty", "at least 1"]),
    ("service-without-ports", services(first={"ports": []}), "firewall.services[0].ports", ["is empty", "at least 1"]),
    ("empty-firewall-table", put("firewall.services", []), "firewall.services", ["is empty", "at least 1"]),
    ("no-pgbouncer-database", put("pgbouncer.databases", []), "pgbouncer.databases", ["is empty", "at least 1"]),
    # --- ranges
    ("port-70000", put("haproxy.write_port", 70000), "haproxy.write_port", ["70000", "at most 65535"]),
    ("port-0", services(first={"ports": [0]}), "firewall.services[0].ports[0]", ["is 0", "at least 1"]),
    ("negative-max-client-conn", put("pgbouncer.max_client_conn", -1), "pgbouncer.max_client_conn",
     ["-1", "at least 1"]),
    ("huge-port", put("etcd.peer_port", 10 ** 30), "etcd.peer_port", [str(10 ** 30), "at most 65535"]),
    ("heartbeat-too-small", put("etcd.heartbeat_interval", 5), "etcd.heartbeat_interval", ["is 5", "at least 10"]),
    ("negative-failover-lag", put("patroni.dcs.maximum_lag_on_failover", -1), "patroni.dcs.maximum_lag_on_failover",
     ["-1", "at least 0"]),
    ("no-web-workers", put("web.workers", 0), "web.workers", ["is 0", "at least 1"]),
    ("negative-size", put("haproxy.replica_max_lag", -5), "haproxy.replica_max_lag", ["-5", "cannot be negative"]),
    ("size-with-a-space", put("haproxy.replica_max_lag", "1 MB"), "haproxy.replica_max_lag",
     ["'1 MB'", "B, kB, MB, GB or TB"]),
    ("duration-in-words", put("haproxy.timeout.client", "30 minutes"), "haproxy.timeout.client",
     ["'30 minutes'", "us, ms, s, m, h or d"]),
    ("relative-data-dir", put("etcd.data_dir", "var/lib/etcd"), "etcd.data_dir",
     ["'var/lib/etcd'", "an absolute path"]),
    # --- enums
    ("pool-mode-sometimes", put("pgbouncer.pool_mode", "sometimes"), "pgbouncer.pool_mode",
     ["'sometimes'", "'session', 'transaction' or 'statement'"]),
    ("postgresql-version-fifteen", put("postgresql.version", "fifteen"), "postgresql.version",
     ["'fifteen'", "allowed: 13, 14, 15, 16, 17 or 18"]),
    ("postgresql-version-11", put("postgresql.version", 11), "postgresql.version",
     ["is 11", "allowed: 13, 14, 15, 16, 17 or 18"]),
    ("os-family-solaris", put("topology.hosts.db-01.os_family", "Solaris"), "topology.hosts.db-01.os_family",
     ["'Solaris'", "'Debian' or 'RedHat'"]),
    ("unknown-role", put("topology.hosts.db-01.roles", ["database"]), "topology.hosts.db-01.roles[0]",
     ["'database'", ALLOWED_ROLES]),
    ("unknown-source-role", services(first={"from": ["web"]}), "firewall.services[0].from[0]",
     ["'web'", "'monitoring' or 'control'"]),
    ("unknown-sysctl-role", put("sysctl", {"dbx": {"vm.swappiness": 1}}), "sysctl", ["'dbx'", ALLOWED_ROLES]),
    ("unknown-database-target", put("web.database_target", "new"), "web.database_target",
     ["'new'", "'legacy' or 'cluster'"]),
    # --- unknown keys at every level
    ("misspelt-section", put("pgbouncr", {"pool_mode": "session"}), "pgbouncr",
     ["unknown key", "did you mean 'pgbouncer'?"]),
    ("unknown-section", put("dashboards", {}), "dashboards", ["unknown key", "known keys: topology, packages"]),
    ("dcs-tll", put("patroni.dcs.tll", 30), "patroni.dcs.tll", ["unknown key", "did you mean 'ttl'?"]),
    ("unknown-key-in-topology", put("topology.domian", "x.lab"), "topology.domian",
     ["unknown key", "did you mean 'domain'?"]),
    ("unknown-key-in-host", put("topology.hosts.db-01.rolez", ["db"]), "topology.hosts.db-01.rolez",
     ["unknown key", "did you mean 'roles'?"]),
    ("unknown-key-in-service", services(first={"port": [2379]}), "firewall.services[0].port",
     ["unknown key", "did you mean 'ports'?"]),
    ("unknown-key-in-user", put("users.app.pasword", "x"), "users.app.pasword",
     ["unknown key", "did you mean 'password'?"]),
    ("unknown-key-in-profile", put("patroni.profiles", {**model._default_profiles(), "fast": {"tll": 20}}),
     "patroni.profiles.fast.tll", ["unknown key", "did you mean 'ttl'?"]),
    ("unknown-key-in-dcs-postgresql", put("patroni.dcs.postgresql.parameters", {}),
     "patroni.dcs.postgresql.parameters", ["unknown key", "known keys: use_pg_rewind, use_slots"]),
    ("unknown-firewall-network", services({"name": "x", "ports": [1], "to": ["db"], "from": ["db"], "network": "dmz"}),
     f"firewall.services[{len(model._default_services())}].network", ["unknown network 'dmz'", "edge, private"]),
    ("missing-host-roles", drop("topology.hosts.db-01.roles"), "topology.hosts.db-01.roles", ["is missing"]),
    ("misspelt-required-section", do(lambda d: d.__setitem__("user", d.pop("users"))), "user",
     ["unknown key", "did you mean 'users'?"]),
    ("misspelt-required-key-in-host",
     do(lambda d: hosts(d)["db-01"].__setitem__("role", hosts(d)["db-01"].pop("roles"))), "topology.hosts.db-01.role", ["unknown key", "did you mean 'roles'?"]),
    ("missing-key-in-service", services({"ports": [9], "to": ["db"], "from": ["db"]}), f"firewall.services[{len(model._default_services())}].name",
     ["is missing"]),
    # --- names
    ("host-name-injection", do(lambda d: hosts(d).__setitem__("db-04;reboot", hosts(d).pop("db-03"))),
     "topology.hosts", ["'db-04;reboot'", DNS_LABEL]),
    ("host-name-upper-case", do(lambda d: hosts(d).__setitem__("DB-03", hosts(d).pop("db-03"))), "topology.hosts",
     ["'DB-03'", DNS_LABEL]),
    ("host-name-trailing-dash", do(lambda d: hosts(d).__setitem__("db-", hosts(d).pop("db-03"))), "topology.hosts",
     ["'db-'", "not starting or ending with '-'"]),
    ("host-name-64-characters", do(lambda d: hosts(d).__setitem__("d" * 64, hosts(d).pop("db-03"))),
     "topology.hosts", ["d" * 64, "1-63 characters"]),
    ("domain-not-dns", put("topology.domain", "Halite_Lab"), "topology.domain",
     ["'Halite_Lab'", "a DNS name is dot-separated labels"]),
    ("username-not-identifier", put("users.app.username", "Car-Sale"), "users.app.username", ["'Car-Sale'", PG_NAME]),
    ("username-64-characters", put("users.app.username", "a" * 64), "users.app.username",
     ["a" * 64, "at most 63 characters"]),
    ("database-injection", put("users.app.database", "car;sale"), "users.app.database", ["'car;sale'", PG_NAME]),
    ("username-with-quote", put("users.rewind.username", 'rewind"user'), "users.rewind.username",
     ["'rewind\"user'", PG_NAME]),
    ("pgbouncer-database-with-space", put("pgbouncer.databases", ["carsale", "post gres"]), "pgbouncer.databases[1]",
     ["'post gres'", PG_NAME]),
    ("dcs-namespace-without-slashes", put("patroni.namespace", "service"), "patroni.namespace",
     ["'service'", "a DCS namespace looks like /service/"]),
    ("sysctl-key-with-space", put("sysctl", {"db": {"vm swappiness": 1}}), "sysctl.db",
     ["'vm swappiness'", "not a sysctl key (e.g. vm.swappiness)"]),
    ("parameter-name-with-space", put("postgresql.parameters", {"shared buffers": "1GB"}), "postgresql.parameters",
     ["'shared buffers'", "a PostgreSQL parameter name is lower-case letters"]),
    ("network-name-injection", put("topology.networks.a;b", {"cidr": "10.77.9.0/24"}), "topology.networks",
     ["'a;b'", NAME]),
    ("bridge-name-too-long", put("topology.networks.edge.bridge", "hl-edge-much-too-long"),
     "topology.networks.edge.bridge", ["'hl-edge-much-too-long'", "1-15 letters, digits"]),
    # --- injection attempts
    ("scope-command-substitution", put("patroni.scope", "$(reboot)"), "patroni.scope", ["'$(reboot)'", NAME]),
    ("service-name-with-quote", services(first={"name": 'x"; flush ruleset'}), "firewall.services[0].name",
     ["flush ruleset", NAME]),
    ("api-username-with-space", put("patroni.restapi.username", "pat roni"), "patroni.restapi.username",
     ["'pat roni'", NAME]),
    ("ntp-server-injection", put("time.servers", ["pool.ntp.org; reboot"]), "time.servers[0]",
     ["'pool.ntp.org; reboot'", "a DNS name"]),
    ("patroni-version-injection", put("patroni.version", "4.1'; reboot; '"), "patroni.version",
     ["reboot", "such as 4.1.* or 4.1.2"]),
    ("pip-find-links-injection", put("packages.pip_find_links", "/srv $(reboot)"), "packages.pip_find_links",
     ["'/srv $(reboot)'", "an absolute path or an http(s)/file URL"]),
    ("pip-index-url-injection", put("packages.pip_index_url", "https://pypi.org/simple`reboot`"),
     "packages.pip_index_url", ["`reboot`", "without spaces, quotes or shell characters"]),
    ("password-with-newline", put("users.app.password", "secret\nreboot"), "users.app.password",
     ["U+000A", "any printable character is allowed"]),
    ("password-with-nul", put("users.superuser.password", "a\x00b"), "users.superuser.password",
     ["U+0000", "any printable character is allowed"]),
    ("password-with-escape", put("patroni.restapi.password", "a\x1b[2Jb"), "patroni.restapi.password",
     ["U+001B", "any printable character"]),
    ("secret-key-with-tab", put("web.secret_key", "a\tb"), "web.secret_key", ["U+0009", "any printable character"]),
    ("password-with-line-separator", put("users.app.password", "a\u2028b"), "users.app.password", ["U+2028"]),
    ("parameter-value-with-newline", put("postgresql.parameters", {"work_mem": "1MB'\nfsync = off"}),
     "postgresql.parameters.work_mem", ["fsync = off", "control characters are not allowed"]),
    ("apt-source-with-newline", put("packages.apt_sources", ["deb x ./\ndeb y ./"]), "packages.apt_sources[0]",
     ["deb y", "control characters are not allowed"]),
    ("data-dir-with-space", put("etcd.data_dir", "/var/lib/etcd /"), "etcd.data_dir",
     ["'/var/lib/etcd /'", "without spaces"]),
    # --- IPv6 and addresses
    ("ipv6-address", put("topology.hosts.db-01.addresses.private", "fd00::11"),
     "topology.hosts.db-01.addresses.private", ["'fd00::11'", IPV6]),
    ("ipv4-mapped-ipv6-address", put("topology.hosts.db-01.addresses.private", "::ffff:10.77.1.11"),
     "topology.hosts.db-01.addresses.private", ["'::ffff:10.77.1.11'", IPV6]),
    ("ipv6-network", put("topology.networks.private.cidr", "fd00:77:1::/64"), "topology.networks.private.cidr",
     ["'fd00:77:1::/64'", IPV6]),
    ("ipv6-lab-range", put("topology.lab_range", "fd00::/48"), "topology.lab_range", ["'fd00::/48'", IPV6]),
    ("etcd-retention-not-a-duration", put("etcd.auto_compaction_retention", "1 hour"),
     "etcd.auto_compaction_retention", "'1 hour'; a duration such as 30m or 1h"),
    ("etcd-revision-retention-a-duration", do(lambda d: d.__setitem__("etcd", {"auto_compaction_mode": "revision"})),
     "etcd.auto_compaction_retention", "with auto_compaction_mode revision it is a number of revisions"),
    ("etcd-quota-too-small", put("etcd.quota_backend_bytes", 1024), "etcd.quota_backend_bytes", "at least 16777216"),
    ("password-looks-like-an-md5-hash", put("users.app.password", "md5" + "0123456789abcdef" * 2),
     "users.app.password", "looks like an md5 or SCRAM hash"),
    ("password-looks-like-a-scram-verifier", put("users.pgbouncer_auth.password", "SCRAM-SHA-256$4096:abc"),
     "users.pgbouncer_auth.password", "looks like an md5 or SCRAM hash"),
    ("dollar-quote-in-a-patroni-role", put("users.rewind.password", "a$$b"), "users.rewind.password",
     "contains '$$', which ends the DO $$ block"),
    ("rest-api-password-not-ascii", put("patroni.restapi.password", "snow ☃"), "patroni.restapi.password",
     "contains '☃'; Patroni's REST API password must be printable ASCII"),
    ("legacy-on-a-db-host", do(lambda d: d["topology"]["hosts"]["db-01"]["roles"].append("legacy_db")),
     "topology.hosts.db-01.roles", "has db and legacy_db"),
    ("ipv6-control-address", put("topology.networks.edge.control_address", "fd00::1"),
     "topology.networks.edge.control_address", ["'fd00::1'", IPV6]),
    ("ipv6-web-bind", put("web.bind", "[::1]:8000"), "web.bind", ["'[::1]:8000'", IPV6, "e.g. 127.0.0.1:8000"]),
    ("address-with-prefix", put("topology.hosts.db-01.addresses.private", "10.77.1.11/24"),
     "topology.hosts.db-01.addresses.private", ["'10.77.1.11/24'", "an IPv4 address such as 10.0.0.1"]),
    ("address-a-host-name", put("topology.hosts.db-01.addresses.private", "db-01.halite.lab"),
     "topology.hosts.db-01.addresses.private", ["'db-01.halite.lab'", "an IPv4 address"]),
    ("network-with-host-bits", put("topology.networks.edge.cidr", "10.77.0.1/24"), "topology.networks.edge.cidr",
     ["'10.77.0.1/24'", "has host bits set"]),
    ("web-bind-port-out-of-range", put("web.bind", "127.0.0.1:99999"), "web.bind",
     ["'127.0.0.1:99999'", "a port 1-65535"]),
    # --- rules across keys (cross_checks), one each
    ("haproxy-write-and-read-on-one-port", put("haproxy.read_port", 5000), "haproxy.read_port",
     ["port 5000 is also haproxy.write_port", "app-01"]),
    ("etcd-client-and-peer-on-one-port", put("etcd.peer_port", 2379), "etcd.peer_port",
     ["port 2379 is also etcd.client_port", "db-01, db-02, db-03"]),
    ("pgbouncer-on-postgresql-port", put("pgbouncer.port", 5432), "pgbouncer.port",
     ["port 5432 is also postgresql.port"]),
    ("stats-on-ssh-port", put("haproxy.stats_port", 22), "haproxy.stats_port", ["port 22 is also ssh", "app-01"]),
    ("gunicorn-on-http-port", put("web.bind", "127.0.0.1:80"), "web.bind", ["port 80 is also web.http_port"]),
    ("port-not-in-the-firewall-table", put("pgbouncer.port", 6433), "pgbouncer.port",
     ["port 6433 is not opened to role db"]),
    ("service-listed-twice", services(model._default_services()[0]), "firewall.services",
     ["service 'etcd-client' is listed twice"]),
    ("service-names-a-role-no-host-has", do(lambda d: hosts(d)["app-01"].__setitem__("roles", ["app", "haproxy"])),
     "firewall.services[8].to", ["names role 'legacy_db', which no host of the topology has"]),
    ("role-no-host-has-named-by-four-services",
     do(lambda d: hosts(d)["app-01"].__setitem__("roles", ["haproxy", "legacy_db"])), "firewall.services[2].from",
     ["names role 'app'", "also named by services[4].from, services[5].from, services[7].to"]),
    ("election-timeout-under-5-heartbeats", put("etcd.election_timeout", 400), "etcd.election_timeout",
     ["is 400", "at least 5 x heartbeat_interval = 500"]),
    ("ttl-under-patroni-minimum", put("patroni.dcs.ttl", 19), "patroni.dcs.ttl", ["is 19", "Patroni's minimum is 20"]),
    ("loop-wait-under-patroni-minimum", put("patroni.dcs.loop_wait", 0), "patroni.dcs.loop_wait",
     ["is 0", "Patroni's minimum is 1"]),
    ("retry-timeout-under-patroni-minimum", put("patroni.dcs.retry_timeout", 2), "patroni.dcs.retry_timeout",
     ["is 2", "Patroni's minimum is 3"]),
    ("ttl-under-loop-wait-plus-two-retries", put("patroni.dcs", {"ttl": 24, "loop_wait": 10, "retry_timeout": 8}),
     "patroni.dcs.ttl", ["is 24", "below loop_wait + 2 x retry_timeout = 26"]),
    ("an-unused-profile-too-fast",
     put("patroni.profiles", {**model._default_profiles(), "fast": {"ttl": 20, "loop_wait": 8, "retry_timeout": 7}}),
     "patroni.profiles.fast.ttl", ["is 20", "below loop_wait + 2 x retry_timeout = 22"]),
    ("unknown-profile", put("patroni.profile", "turbo"), "patroni.profile", ["'turbo'", "known: patroni-defaults"]),
    ("even-etcd-members", drop("topology.hosts.db-03"), "topology.hosts (role db: etcd members)",
     ["an odd number of members, at least 3", "gives 2"]),
    ("four-etcd-members", put("topology.hosts.db-04", {"roles": ["db"], "addresses": {"private": "10.77.1.14"}}),
     "topology.hosts (role db: etcd members)", ["an odd number", "gives 4"]),
    ("no-jump-host", drop("topology.hosts.jump-01"), "topology.hosts (role jump)", ["no host has the role 'jump'"]),
    ("no-haproxy-host", do(lambda d: hosts(d)["app-01"].__setitem__("roles", ["app", "legacy_db"])),
     "topology.hosts (role haproxy)", ["no host has the role 'haproxy'"]),
    ("two-jump-hosts", put("topology.hosts.db-01.roles", ["db", "jump"]), "topology.hosts (role jump)",
     ["one jump host is supported", "jump-01, db-01"]),
    ("a-role-twice", put("topology.hosts.db-01.roles", ["db", "db"]), "topology.hosts.db-01.roles",
     ["names role 'db' twice"]),
    ("host-without-addresses", put("topology.hosts.db-02.addresses", {}), "topology.hosts.db-02.addresses",
     ["every host needs an address"]),
    ("db-host-off-the-private-network", put("topology.hosts.db-01.addresses", {"edge": "10.77.0.31"}),
     "topology.hosts.db-01.addresses", ["a db host needs an address on the 'private' network"]),
    ("address-on-an-unknown-network", put("topology.hosts.db-01.addresses.dmz", "10.77.5.1"),
     "topology.hosts.db-01.addresses.dmz", ["names network 'dmz'", "known: edge, private"]),
    ("address-outside-its-network", put("topology.hosts.db-01.addresses.private", "10.99.0.1"),
     "topology.hosts.db-01.addresses.private", ["10.99.0.1 is outside network private (10.77.1.0/24)"]),
    ("address-used-twice", put("topology.hosts.db-03.addresses.private", "10.77.1.11"),
     "topology.hosts.db-03.addresses.private", ["10.77.1.11 is already the address of db-01"]),
    ("networks-overlap", put("topology.networks.dmz", {"cidr": "10.77.1.128/25"}), "topology.networks.private.cidr",
     ["overlaps network dmz (10.77.1.128/25)"]),
    ("control-address-outside-its-network", put("topology.networks.edge.control_address", "10.77.1.1"),
     "topology.networks.edge.control_address", ["10.77.1.1 is outside network edge"]),
    ("network-outside-the-lab-range", put("topology.lab_range", "10.77.0.0/24"), "topology.networks.private.cidr",
     ["10.77.1.0/24 is outside lab_range 10.77.0.0/24"]),
    ("no-control-address", drop("topology.networks.edge.control_address"), "topology.networks",
     ["no network gives control_address"]),
    ("two-users-one-name", put("users.rewind.username", "replicator"), "users.rewind.username",
     ["'replicator' is already users.replication.username"]),
    ("api-password-is-the-superuser-password",
     do(lambda d: (d["users"]["superuser"].__setitem__("password", "same-Secret-1"),
                   d["patroni"]["restapi"].__setitem__("password", "same-Secret-1"))),
     "patroni.restapi.password", ["must differ from users.superuser.password"]),
    ("pgbouncer-without-the-site-database", put("pgbouncer.databases", ["postgres"]), "pgbouncer.databases",
     ["must include the site's database 'carsale'"]),
    ("site-without-a-database", put("users.app.database", None), "users.app", ["needs database"]),
    ("move-expendable-without-schema", put("move.expendable_tables", ["schema_migrations"]),
     "move.expendable_tables[0]", ["'schema_migrations'", "schema.table"]),
    ("move-overwrite-not-a-boolean", put("move.overwrite_target", "maybe"), "move.overwrite_target",
     ["'maybe'", "expected true or false"]),
    ("web-on-an-unknown-network", put("web.listen_network", "dmz"), "web.listen_network",
     ["'dmz'", "known networks: edge, private"]),
    ("web-on-a-network-the-app-host-is-not-on", do(lambda d: (
        d["topology"]["networks"].__setitem__("dmz", {"cidr": "10.77.2.0/24"}),
        d.setdefault("web", {}).__setitem__("listen_network", "dmz"))), "web.listen_network",
     ["app host app-01 has no address on network 'dmz'"]),
]


@pytest.mark.parametrize("mutate,key,words", [pytest.param(m, k, w, id=i) for i, m, k, w in CASES])
def test_a_bad_input_is_refused_with_one_line_naming_key_value_and_what_is_allowed(mutate, key, words):
    with pytest.raises(model.ConfigError) as info:
        model.validate(mutate(base()))
    problems = info.value.problems
    assert len(problems) == 1, "\n".join(f"{k}: {m}" for k, m in problems)
    assert problems[0][0] == key, problems
    for word in words:
        assert word in problems[0][1], problems


def test_the_case_table_has_distinct_ids_and_at_least_45_cases():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 45


def test_the_shipped_description_passes():
    settings = model.validate(base())
    assert sorted(settings.topology.hosts) == ["app-01", "backup-01", "db-01", "db-02", "db-03", "jump-01", "mon-01"]
    data = model.dump(settings)
    assert data["patroni"]["dcs"]["ttl"] == 20  # the halite profile, merged under dcs
    model.validate({**data, "topology": data["topology"]})  # what dump gives is valid input again


def test_every_type_problem_is_reported_at_once():
    d = base()
    d["haproxy"] = {"write_port": "5000", "read_port": 70000}
    d["pgbouncer"] = {"pool_mode": "sometimes", "max_client_conn": -1}
    d["patroni"]["dcs"] = {"tll": 30}
    d["postgresql"] = {"version": "fifteen"}
    d["users"]["app"]["password"] = "a\nb"
    d["topology"]["hosts"]["db-01"]["addresses"]["private"] = "fd00::11"
    d["pgbouncr"] = {}
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    keys = [k for k, _ in info.value.problems]
    assert sorted(keys) == sorted([
        "haproxy.write_port", "haproxy.read_port", "pgbouncer.pool_mode", "pgbouncer.max_client_conn",
        "patroni.dcs.tll", "postgresql.version", "users.app.password", "topology.hosts.db-01.addresses.private",
        "pgbouncr"]), info.value.problems
    assert str(info.value).count("\n") == 8  # one line each


def test_two_bad_names_in_one_mapping_are_both_reported():
    d = base()
    d["topology"]["hosts"]["DB-01"] = d["topology"]["hosts"].pop("db-01")
    d["topology"]["hosts"][4] = d["topology"]["hosts"].pop("db-02")
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    assert [k for k, _ in info.value.problems] == ["topology.hosts", "topology.hosts"]
    assert "'DB-01'" in info.value.problems[0][1] and "key 4" in info.value.problems[1][1]


def test_every_rule_across_keys_is_reported_at_once():
    d = base()
    d["haproxy"] = {"read_port": 5000}
    d["etcd"] = {"peer_port": 2379, "election_timeout": 400}
    d["patroni"]["dcs"] = {"ttl": 24, "loop_wait": 10, "retry_timeout": 8}
    d["users"]["rewind"]["username"] = "replicator"
    del d["topology"]["hosts"]["db-03"]
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    assert [k for k, _ in info.value.problems] == [
        "topology.hosts (role db: etcd members)", "etcd.peer_port", "haproxy.read_port", "etcd.election_timeout",
        "patroni.dcs.ttl", "users.rewind.username"], info.value.problems
    # the first problem stays reachable as .key/.problem (callers showing one line)
    assert info.value.key == "topology.hosts (role db: etcd members)"


def test_type_mistakes_and_rules_across_keys_in_one_run():
    """Wrong values that are unknown keys or have defaults are left out, and the
    rules across keys run on the rest: both kinds come back from one check."""
    d = base()
    d["patroni"]["dcs"] = {"tll": 20}
    d["haproxy"] = {"write_port": "5000", "read_port": 5001, "stats_port": 5001}
    d["etcd"] = {"election_timeout": 300}
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    assert info.value.problems == [
        ("patroni.dcs.tll", "unknown key; did you mean 'ttl'?"),
        ("haproxy.write_port", "is '5000' (a string); expected an integer"),
        ("haproxy.stats_port", "port 5001 is also haproxy.read_port on host app-01"),
        ("etcd.election_timeout", "is 300; must be at least 5 x heartbeat_interval = 500"),
    ]


def test_rules_about_a_key_left_out_are_not_reported():
    d = base()
    d["topology"]["networks"]["edge"]["control_address"] = "fd00::1"  # the only control address, wrong
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    assert [k for k, _ in info.value.problems] == ["topology.networks.edge.control_address"]


def test_rules_a_single_mistake_cannot_reach_alone():
    """synchronous_mode with one db host, and etcd's two ports without db hosts, are also refused."""
    settings = model.validate(base())
    settings.topology.hosts = {h: v for h, v in settings.topology.hosts.items() if h not in ("db-02", "db-03")}
    assert ("patroni.dcs.synchronous_mode", "needs a second eligible member; the topology has one db host") \
        in model.cross_checks(settings)
    settings = model.validate(base())
    settings.topology.hosts = {h: v for h, v in settings.topology.hosts.items() if "db" not in v.roles}
    settings.etcd.peer_port = settings.etcd.client_port
    assert ("etcd.peer_port", "must differ from etcd.client_port") in model.cross_checks(settings)


@pytest.mark.parametrize("password", [
    "it's", 'say "hi"', "$HOME$(id)`id`", "a:b:c", "back\\slash", "with spaces ", "#not-a-comment",
    "pässwörd-日本-🔑", "%s{0}&|;<>*?~!", "-starts-with-dash", "0", "null", "yes"])
def test_printable_nasty_passwords_are_accepted(password):
    d = base()
    d["users"]["app"]["password"] = password
    d["web"]["secret_key"] = password
    settings = model.validate(d)
    assert settings.users.app.password == password


def _garbage(rng: random.Random):
    return rng.choice([
        None, True, False, 0, -1, 1, 65536, 10 ** 20, 1.5, float("nan"), float("inf"), "", " ", "x", "yes", "5432",
        "fd00::1", "10.0.0.1", "a\nb", "a;b", "$(reboot)", "é", "\x00", [], [1, "a"], {}, {"a": 1}, {1: 2},
        [{}], {"ttl": "x"}, {"roles": None}, b"bytes",
    ])


def _mutate_randomly(node, rng: random.Random):
    """Replace one random leaf or branch of ``node`` (or add/drop a key) with garbage."""
    parent, key = None, None
    cur = node
    while isinstance(cur, (dict, list)) and cur and rng.random() < 0.8:
        parent = cur
        key = rng.choice(list(cur)) if isinstance(cur, dict) else rng.randrange(len(cur))
        cur = cur[key]
    if parent is None:
        return _garbage(rng) if rng.random() < 0.05 else node
    action = rng.random()
    if action < 0.1 and isinstance(parent, dict):
        del parent[key]
    elif action < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["tll", "extra", 5, "db-04", "a;b"])] = _garbage(rng)
    else:
        parent[key] = _garbage(rng)
    return node


def test_random_garbage_gives_config_errors_never_a_traceback():
    rng = random.Random(20261130)
    refused = 0
    for _ in range(400):
        d = base()
        for _ in range(rng.randint(1, 4)):
            d = _mutate_randomly(d, rng)
        try:
            model.validate(d)
        except model.ConfigError as exc:
            refused += 1
            assert exc.problems and all(isinstance(k, str) and k and isinstance(m, str) and m
                                        for k, m in exc.problems), exc.problems
            assert len(set(exc.problems)) == len(exc.problems), exc.problems
    assert refused > 300  # the loop really exercised the refusals


@pytest.mark.parametrize("key, value, words", [
    ("monitoring.for.leader", "1 minute", ["a Prometheus duration", "ms, s, m, h or d"]),
    ("monitoring.for.archive", "500us", ["a Prometheus duration"]),
    ("monitoring.thresholds.disk_used_percent", 100, ["must be at most 99"]),
    ("monitoring.thresholds.replica_lag_bytes", "1MB", ["expected an integer"]),
    ("monitoring.thresholds.clock_offset_seconds", 0, ["must be more than 0"]),
    ("monitoring.ports.node_exporter", 0, ["must be at least 1"]),
    ("monitoring.thresholds.backup_max_age", "1d2h", ["a Prometheus duration"]),
])
def test_a_bad_monitoring_value_is_refused(key, value, words):
    with pytest.raises(model.ConfigError) as info:
        model.validate(put(key, value)(base()))
    assert [k for k, _ in info.value.problems] == [key]
    for word in words:
        assert word in info.value.problems[0][1], info.value.problems


def test_a_topology_that_is_not_the_lab_refuses_the_labs_old_example_passwords():
    old_lab_app_password = 'lab ca\'r"sale $1:5 back\\slash #5 {{ pillar }} pässwörd–☃ ;'
    d = base()
    d["users"]["app"]["password"] = old_lab_app_password
    model.validate(copy.deepcopy(d))  # the lab itself may still use it
    d["topology"]["name"] = "shop"
    d["packages"] = {}  # not the lab's mirror (refused on its own, below)
    with pytest.raises(config.ConfigError) as info:
        model.validate(d)
    assert info.value.problems == [("users.app.password", "is copied from the lab's examples; on topology 'shop' "
                                    "leave it empty (halite generates one) or give your own")]


def test_a_topology_that_is_not_the_lab_refuses_the_labs_package_sources():
    d = base()
    d["topology"]["name"] = "shop"
    d["packages"]["apt_sources"] = [*d["packages"]["apt_sources"],
                                    "deb [arch=amd64 trusted=yes] https://apt.example.com/debian bookworm main",
                                    "deb [signed-by=/etc/apt/keyrings/pgdg.gpg] https://apt.postgresql.org/pub/repos/apt "
                                    "bookworm-pgdg main"]
    problems = refused(d)
    assert problems == [
        ("packages.apt_sources[0]", "is the lab's package mirror (/srv/halite-mirror); on topology 'shop' name "
                                    "your distribution's or your organisation's repository"),
        ("packages.apt_sources[1]", "trusts an unsigned source ([trusted=yes]); on topology 'shop' give the "
                                    "repository's key ([signed-by=/path/to/key.gpg])"),
        ("packages.apt_keys.halite-lab-mirror", "is the lab mirror's key (/var/lib/halite/mirror-key/"
                                                "halite-lab-mirror.asc); on topology 'shop' name your repository's key"),
        ("packages.pip_find_links", "is the lab's wheel folder (/srv/halite-mirror/pypi); on topology 'shop' "
                                    "leave it empty (PyPI) or name your own folder or index"),
    ]
    d["packages"]["yum_repos"] = {"mine": {"baseurl": "https://rpm.example.com/el9", "gpgcheck": False},
                                  "lab": {"baseurl": "file:///srv/halite-mirror/rpm", "gpgcheck": False}}
    assert refused(d)[4:] == [
        ("packages.yum_repos.mine.gpgcheck", "is off; on topology 'shop' a repository is checked with its key"),
        ("packages.yum_repos.lab", "is the lab's package mirror (/srv/halite-mirror); on topology 'shop' name "
                                   "your distribution's, PGDG's or your organisation's repository"),
    ]
    d["packages"]["yum_repos"] = {}
    # the lab itself uses them, and a site without them is fine
    model.validate(base())
    d["packages"] = {"apt_sources": d["packages"]["apt_sources"][2:]}
    model.validate(d)


def test_the_lab_settings_file_goes_with_the_lab_topology_only(tmp_path):
    topo = config.read_yaml(config.PILLAR_DIR / "topology.yaml")
    assert config.PILLAR_DIR / "lab.yaml" in config.settings_paths(topo)
    topo["name"] = "shop"
    assert config.PILLAR_DIR / "lab.yaml" not in config.settings_paths(topo)
    shop = tmp_path / "shop.yaml"
    shop.write_text(__import__("yaml").safe_dump(topo))
    data = config.load(topology_file=shop, generate=False)
    assert data["packages"]["apt_sources"] == [] and data["packages"]["pip_find_links"] is None


def refused(d: dict) -> list[tuple[str, str]]:
    with pytest.raises(model.ConfigError) as info:
        model.validate(d)
    return info.value.problems


def test_one_monitoring_host_at_most():
    d = base()
    d["topology"]["hosts"]["mon-02"] = {"roles": ["monitoring"], "addresses": {"private": "10.77.1.41"}}
    problems = refused(d)
    assert ("topology.hosts (role monitoring)",
            "one monitoring host (Prometheus) is supported; the topology gives mon-01, mon-02") in problems


def test_the_exporters_password_may_not_start_or_end_with_a_space():
    d = base()
    d.setdefault("users", {})["monitor"] = {"password": " padded "}
    [(key, problem)] = refused(d)
    assert key == "users.monitor" and "DATA_SOURCE_PASS_FILE" in problem
    d["users"]["monitor"] = {"password": "inner space ok"}
    assert model.validate(d).users.monitor.username == "halite_monitor"  # the default name is kept
    for bad in ("it's", "back\\slash"):
        d["users"]["monitor"] = {"password": bad}
        [(key, problem)] = refused(d)
        assert key == "users.monitor" and "malformed dsn" in problem


@pytest.mark.parametrize("url, ok", [("https://pager.example.com/hook?k=1", True), ("http://10.0.0.5:9095/", True),
                                     ("ftp://x/", False), ("https://", False), ("hook", False)])
def test_the_webhook_is_an_http_url(url, ok):
    d = base()
    d["monitoring"] = {"webhook_url": url}
    if ok:
        assert model.validate(d).monitoring.webhook_url == url
    else:
        [(key, problem)] = refused(d)
        assert key == "monitoring.webhook_url" and "http:// or https://" in problem


def test_a_monitoring_port_the_access_table_does_not_open_is_refused():
    d = base()
    d["monitoring"] = {"ports": {"postgres_exporter": 9188}}
    problems = refused(d)
    assert any(k == "monitoring.ports.postgres_exporter" and "9188 is not opened to role db" in p for k, p in problems)


def test_a_monitoring_port_clashing_with_another_listener_is_refused():
    d = base()
    d["monitoring"] = {"ports": {"dashboard": 9090}}
    problems = refused(d)
    assert ("monitoring.ports.dashboard", "port 9090 is also monitoring.ports.prometheus on host mon-01") in problems
