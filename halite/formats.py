"""Secrets into files: one function per format halite writes a password into.

A password may hold any printable character (quotes, ``$``, ``:``, ``\\``,
spaces, ``#``, non-ASCII); the model refuses control characters. Each function
here returns the text of one value or one line in one file format, escaped by
that format's own rules, so the program that reads it gets the password back
exactly. Every function is pure; the tests parse each result back with the
real reader where there is one (libpq, PgBouncer, PostgreSQL, PyYAML).

Where a library does it, it is used: :func:`conninfo` is psycopg's
``make_conninfo`` (checked by libpq's own parser), :func:`sql_literal` is
psycopg's ``sql.Literal``. The others are written here because no library
writes them: PgBouncer's ``auth_file``, libpq's ``.pgpass``, systemd's
``EnvironmentFile=`` and the site's ``site.env``.

The strings derived from secrets (the site's DSNs, PgBouncer's userlist) are
computed once here, in Python, on the control machine (``halite.config.pillar_for``)
and handed to the templates through the per-host pillar: templates print them,
they do not assemble them. YAML needs nothing here: the ``|json`` filter of
Salt (``ensure_ascii=False``) writes a JSON string, which is a YAML
double-quoted scalar (the render tests read every file back with PyYAML).
ensure_ascii matters: PyYAML does not join ``\\ud83d\\ude00`` surrogate escapes
and Salt's loader refuses them, so the ``|tojson`` filter (ensure_ascii=True)
would break a password holding an emoji.
HAProxy's configuration holds one: the stats page's login (:func:`haproxy_word`).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from halite import platforms
from halite.view import TLS_PATHS, cluster_address, hosts_with_role, service_name, tls_on

REPO = Path(__file__).resolve().parent.parent

#: Characters no line-based format here can carry (the model refuses them too).
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(what: str, value: str) -> str:
    value = str(value)
    if _LINE_BREAKING.search(value):
        raise ValueError(f"{what}: a control character or line break cannot be written into this format")
    return value


# --------------------------------------------------------------------------
# libpq


def conninfo(*pairs: tuple[str, object]) -> str:
    """A libpq connection string (``key=value ...``), in the order given.

    psycopg's ``make_conninfo`` escapes each value (``\\`` and ``'`` get a
    backslash, a value with a space or that is empty is single-quoted) and
    checks the result with libpq's parser. ``None`` values are left out.

    :param pairs: ``(keyword, value)`` pairs, e.g. ``("password", pw)``.
    :returns: e.g. ``host=10.0.0.1 port=5432 password='a b\\'c'``.
    """
    return make_conninfo("", **{key: (None if value is None else str(value)) for key, value in pairs})


def without_password(text: str) -> str:
    """``text`` (a conninfo or URI) with its password left out, for messages and logs."""
    try:
        params = conninfo_to_dict(text)
    except Exception:  # noqa: BLE001 - psycopg.ProgrammingError, or anything libpq refuses
        return "(a connection string libpq does not parse)"
    params.pop("password", None)
    return make_conninfo("", **params)


def server_options(data: dict, link: str, address: str, port: object, name: str | None = None,
                   ca: object = TLS_PATHS["ca"]) -> list[tuple[str, object]]:
    """The libpq options that reach a server of ``link`` (``postgresql`` or ``pgbouncer``)
    and, when halite encrypts that link, verify it: every client of the cluster's
    PostgreSQL and PgBouncer builds its connection with this one function.

    :param data: the validated settings (:func:`halite.config.load`).
    :param link: the link (:data:`halite.view.TLS_LINKS`) whose ``tls.unsafe_plaintext`` decides.
    :param address: the address(es) dialled (``a,b`` for several hosts, as libpq takes them).
    :param port: the port.
    :param name: the name to verify instead of the address: the cluster's
        :func:`halite.view.service_name` through HAProxy (TCP passthrough to whichever db
        host answers), dialled at ``address`` with ``hostaddr``. ``None``: the address
        itself is verified (it is in the server's certificate).
    :param ca: halite's CA certificate where the client runs (on the hosts
        ``/etc/halite/tls/ca.crt``; on the control machine ``halite.view.state_dir(data) / "ca.crt"``).
    :returns: ``[("host", ...), ("port", ...)]`` for a link in clear text; with TLS
        ``sslmode=verify-full`` and ``sslrootcert`` too, and ``host=name hostaddr=address``
        when ``name`` is given.
    """
    if not tls_on(data)[link]:
        return [("host", address), ("port", port)]
    where = [("host", name), ("hostaddr", address)] if name else [("host", address)]
    return [*where, ("port", port), ("sslmode", "verify-full"), ("sslrootcert", str(ca))]


def cluster_options(data: dict, address: str, port: object, ca: object = TLS_PATHS["ca"]) -> list[tuple[str, object]]:
    """:func:`server_options` through HAProxy at ``address`` (its write or read ``port``): the
    TLS of the db host behind it (PgBouncer's) is verified as the cluster's service name."""
    return server_options(data, "pgbouncer", address, port, name=service_name(data), ca=ca)


def pgpass_line(host: str, port: object, database: str, user: str, password: str) -> str:
    """One line of libpq's password file (``.pgpass``, ``PGPASSFILE``), with its newline.

    libpq splits the line at ``:`` and takes ``\\`` as "the next character
    is literal" (PostgreSQL docs, "The Password File"; ``passwordFromFile``
    in libpq's fe-connect.c), so both are escaped with a backslash in every
    field. ``*`` in a field is the wildcard, so a literal ``*`` cannot be
    matched; pass ``"*"`` on purpose only.
    """
    fields = [_one_line(".pgpass field", str(f)) for f in (host, port, database, user, password)]
    return ":".join(re.sub(r"([\\:])", r"\\\1", f) for f in fields) + "\n"


# --------------------------------------------------------------------------
# PostgreSQL SQL


def sql_literal(value: str) -> str:
    """A SQL string literal for ``value``, correct whatever ``standard_conforming_strings`` is.

    psycopg's ``sql.Literal`` without a connection: ``'`` is doubled, and a
    value holding ``\\`` becomes ``E'...'`` with the backslashes doubled (what
    PostgreSQL's own ``quote_literal`` does). ``_modules/pg_move._lit``
    (which runs on the hosts, without psycopg) writes the same; a unit test
    holds them together.
    """
    # psycopg puts a space before E'...' (so that it never glues onto a word); not needed here
    return sql.Literal(str(value)).as_string(None).strip()


# --------------------------------------------------------------------------
# PgBouncer


def pgbouncer_userlist_line(user: str, password: str) -> str:
    """One line of PgBouncer's ``auth_file`` (userlist.txt), with its newline.

    Both fields are double-quoted and a ``"`` inside is doubled (PgBouncer's
    docs, "Authentication file format"; ``load_auth_file`` in its
    src/loader.c). The password is taken as plain text unless it looks like a
    hash: ``md5`` + 32 hex digits or ``SCRAM-SHA-256$...``.
    """
    def quote(value: str) -> str:
        return '"' + _one_line("userlist field", value).replace('"', '""') + '"'

    return f"{quote(user)} {quote(password)}\n"


def pgbouncer_userlist(data: dict) -> str:
    """The whole userlist.txt of a db host: the auth_query user's line, and with a
    monitoring host the exporters' login (a stats user: the admin console knows only the
    users of this file).

    :param data: the validated settings (:func:`halite.config.load`).
    """
    auth = data["users"]["pgbouncer_auth"]
    out = pgbouncer_userlist_line(auth["username"], auth["password"])
    if any("monitoring" in (h.get("roles") or []) for h in data["topology"]["hosts"].values()):
        mon = data["users"]["monitor"]
        out += pgbouncer_userlist_line(mon["username"], mon["password"])
    return out


# --------------------------------------------------------------------------
# environment files


#: Characters systemd unescapes after a backslash inside double quotes
#: (SHELL_NEED_ESCAPE in systemd's src/basic/escape.h); any other backslash is kept.
SYSTEMD_DQUOTE_ESCAPES = '"\\`$'


def systemd_env_line(key: str, value: str) -> str:
    """One line of a systemd ``EnvironmentFile=``, with its newline: ``KEY="value"``.

    Inside double quotes systemd removes a backslash before ``"``, ``\\``,
    `````` and ``$`` and keeps every other character as it is (systemd.exec(5),
    "EnvironmentFile="; the parser is ``parse_env_file_internal`` in
    src/basic/env-file.c, state DOUBLE_QUOTE_VALUE). Those four get a
    backslash, so the line also means the same to a POSIX shell.
    systemd does not expand ``$VAR`` in these files.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ValueError(f"{key!r} is not an environment variable name")
    escaped = re.sub(r'(["\\`$])', r"\\\1", _one_line(f"environment value of {key}", value))
    return f'{key}="{escaped}"\n'


def site_env_line(key: str, value: str) -> str:
    """One line of the site's ``site.env``: ``KEY=value``, with its newline.

    The site's reader (salt/web/files/gunicorn.conf.py.jinja) takes the
    value from after the first ``=`` to the end of the line, exactly: no
    quotes, no escapes, no trimming. So the value is written as it is; only a
    line break could not be, and the model refuses those.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ValueError(f"{key!r} is not an environment variable name")
    return f"{key}={_one_line(f'site.env value of {key}', value)}\n"


# --------------------------------------------------------------------------
# HAProxy


def haproxy_word(value: str) -> str:
    """One argument of an HAProxy configuration line, e.g. ``stats auth``'s ``user:password``.

    HAProxy (2.x, "Quoting and escaping" in its configuration manual) takes text
    between single quotes as it is: no escape, no ``${VAR}`` expansion, no ``#``
    comment; quoted and unquoted parts next to each other make one word, and outside
    quotes a backslash makes the next character literal. So the value is single-quoted
    and each ``'`` in it is written ``'\\''`` (close, a literal quote, reopen).
    """
    return "'" + _one_line("HAProxy argument", value).replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------
# salt-ssh


# --------------------------------------------------------------------------
# derived strings for the templates


def pg_socket_dir(os_family: str) -> str:
    """PostgreSQL's socket directory on an OS family (halite.platforms, its one place)."""
    return platforms.FAMILIES[os_family]["paths"]["pg_socket_dir"]


def web_dsns(data: dict, host: str) -> dict:
    """The car market's connection strings as ``host`` uses them.

    :param data: the validated settings (:func:`halite.config.load`).
    :param host: the host whose view this is (its address for HAProxy differs).
    :returns: ``legacy`` (the app's DSN on the legacy server, from this host:
        127.0.0.1), ``cluster_write``/``cluster_read`` (the app's DSNs through
        HAProxy's ports: 127.0.0.1 on a HAProxy host, else the first HAProxy
        host; with TLS, verified as the cluster's service name: :func:`cluster_options`),
        ``patroni_urls`` (``https://<db>:<port>,...`` for the status page; ``http`` with
        ``patroni_api`` in ``tls.unsafe_plaintext``), ``move_source`` (the legacy server from a db host, as
        legacy_move) and ``move_target`` (the local PostgreSQL over its
        socket, as the superuser, no password: peer authentication).
    """
    topo = data["topology"]
    app, users = data["users"]["app"], data["users"]
    login = [("dbname", app["database"]), ("user", app["username"]), ("password", app["password"])]
    proxies = hosts_with_role(topo, "haproxy")
    proxy = "127.0.0.1" if host in proxies else cluster_address(topo, proxies[0])
    legacy_hosts = hosts_with_role(topo, "legacy_db")
    family = topo["hosts"][host].get("os_family", "Debian")
    port = data["patroni"]["restapi"]["port"]
    api = "https" if tls_on(data)["patroni_api"] else "http"
    return {
        "legacy": conninfo(("host", "127.0.0.1"), ("port", data["legacy"]["port"]), *login),
        "cluster_write": conninfo(*cluster_options(data, proxy, data["haproxy"]["write_port"]), *login),
        "cluster_read": conninfo(*cluster_options(data, proxy, data["haproxy"]["read_port"]), *login),
        "patroni_urls": ",".join(f"{api}://{cluster_address(topo, h)}:{port}" for h in hosts_with_role(topo, "db")),
        "move_target": conninfo(("host", pg_socket_dir(family)), ("port", data["postgresql"]["port"]),
                                ("dbname", app["database"]), ("user", users["superuser"]["username"])),
        "move_source": conninfo(("host", cluster_address(topo, legacy_hosts[0]) if legacy_hosts else ""),
                                ("port", data["legacy"]["port"]), ("dbname", app["database"]),
                                ("user", users["legacy_move"]["username"]),
                                ("password", users["legacy_move"]["password"])),
    }
