"""Configuration: defaults, overridden by HALITE_WEB_* environment variables,
overridden by the mapping given to create_app()."""
from __future__ import annotations

import os
import secrets
import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "WRITE_DSN": None,          # HAProxy primary port in production
    "READ_DSN": None,           # HAProxy replica port; falls back to WRITE_DSN
    "PATRONI_URLS": [],         # ["https://10.77.1.11:8008", ...]
    "PATRONI_CA_FILE": None,    # the CA https APIs are verified against (/etc/halite/tls/ca.crt)
    "SECRET_KEY": None,
    "POOL_MIN_SIZE": 1,
    "POOL_MAX_SIZE": 5,
    "POOL_TIMEOUT": 3.0,        # seconds to wait for a pooled connection
    "CONNECT_TIMEOUT": 3,       # libpq connect_timeout (integer seconds)
    "POOL_RECONNECT_TIMEOUT": 10.0,  # caps the pool's reconnection backoff
    "RYW_SECONDS": 5.0,         # read-your-writes window after a user's own write
    "RETRY_AFTER": 5,           # Retry-After header on 503
    "DB_WAIT_SECONDS": 5.0,     # how long a request waits for its database path (a switchover) before 503
    "PATRONI_TIMEOUT": 2.0,
    "PER_PAGE": 24,
    "CSRF_ENABLED": True,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
}

# env var -> (config key, parser)
def _float(v: str) -> float:
    return float(v)


def _bool(v: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case)."""
    low = v.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _urls(v: str) -> list[str]:
    return [u.strip().rstrip("/") for u in v.split(",") if u.strip()]


ENV = {
    "HALITE_WEB_WRITE_DSN": ("WRITE_DSN", str),
    "HALITE_WEB_READ_DSN": ("READ_DSN", str),
    "HALITE_WEB_PATRONI_URLS": ("PATRONI_URLS", _urls),
    "HALITE_WEB_PATRONI_CA_FILE": ("PATRONI_CA_FILE", str),
    "HALITE_WEB_SECRET_KEY": ("SECRET_KEY", str),
    "HALITE_WEB_POOL_MIN_SIZE": ("POOL_MIN_SIZE", int),
    "HALITE_WEB_POOL_MAX_SIZE": ("POOL_MAX_SIZE", int),
    "HALITE_WEB_POOL_TIMEOUT": ("POOL_TIMEOUT", _float),
    "HALITE_WEB_CONNECT_TIMEOUT": ("CONNECT_TIMEOUT", int),
    "HALITE_WEB_RYW_SECONDS": ("RYW_SECONDS", _float),
    "HALITE_WEB_RETRY_AFTER": ("RETRY_AFTER", int),
    "HALITE_WEB_DB_WAIT_SECONDS": ("DB_WAIT_SECONDS", _float),
    # served over https only (nginx, halite.view.site_view): the session cookie never goes out in clear
    "HALITE_WEB_SESSION_COOKIE_SECURE": ("SESSION_COOKIE_SECURE", _bool),
}


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    cfg = dict(DEFAULTS)
    for var, (key, parse) in ENV.items():
        raw = environ.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            # strings exactly as given (a password or key may start or end with a space)
            cfg[key] = raw if parse is str else parse(raw.strip())
        except ValueError:
            log.warning("ignoring invalid %s=%r", var, raw)
    if overrides:
        cfg.update(overrides)
    if isinstance(cfg.get("PATRONI_URLS"), str):
        cfg["PATRONI_URLS"] = _urls(cfg["PATRONI_URLS"])
    if not cfg.get("READ_DSN"):
        cfg["READ_DSN"] = cfg.get("WRITE_DSN")
    if not cfg.get("SECRET_KEY"):
        log.warning("HALITE_WEB_SECRET_KEY is not set: using a random key "
                    "(sessions will not survive restarts or span workers)")
        cfg["SECRET_KEY"] = secrets.token_hex(32)
    return cfg
