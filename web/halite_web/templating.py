"""Jinja filters, CSRF token and per-request backend headers."""
from __future__ import annotations

import hmac
import secrets
from decimal import Decimal
from typing import Any

from flask import Flask, abort, g, request, session

from .vocab import SORTS, FUELS, TRANSMISSIONS, BODY_TYPES, COLORS, CONDITIONS


def csrf_token() -> str:
    tok = session.get("csrf")
    if not tok:
        tok = session["csrf"] = secrets.token_urlsafe(24)
    return tok


def money(value: Any) -> str:
    if value is None:
        return "–"
    d = Decimal(value)
    if d == d.to_integral_value():
        return f"€{d:,.0f}"
    return f"€{d:,.2f}"


def km(value: Any) -> str:
    return "–" if value is None else f"{int(value):,} km"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["km"] = km
    app.jinja_env.globals.update(csrf_token=csrf_token, SORTS=SORTS, FUELS=FUELS,
                                 TRANSMISSIONS=TRANSMISSIONS, BODY_TYPES=BODY_TYPES,
                                 COLORS=COLORS, CONDITIONS=CONDITIONS)

    @app.before_request
    def check_csrf():
        if request.method != "POST" or not app.config.get("CSRF_ENABLED", True):
            return None
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(str(sent), str(expected)):
            abort(400, description="Your form has expired (or cookies are disabled). "
                                   "Please reload the page and try again.")
        return None

    @app.after_request
    def backend_headers(resp):
        backend = g.get("backend")
        if backend is not None:
            resp.headers["X-Halite-Pool"] = backend.pool or ""
            resp.headers["X-Halite-Backend"] = backend.address
            if backend.fallback:
                resp.headers["X-Halite-Fallback"] = "1"
        return resp
