"""Friendly error pages: 503 + Retry-After when the database path is down,
JSON under /api/, never a traceback."""
from __future__ import annotations

import logging

import psycopg
import psycopg.errors
from flask import Flask, jsonify, make_response, render_template, request
from psycopg_pool import PoolTimeout, PoolClosed, TooManyRequests
from werkzeug.exceptions import HTTPException

from .db import DatabaseUnavailable, UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

# the schema is missing: the site is deployed but `migrate` has not run yet
SCHEMA_NOT_READY = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)


#: Errors that say the request itself is wrong: everything else a database
#: raises while the primary changes (recovery conflicts, sessions cut by a
#: pooler or a demotion, ...) is transient, answered 503, never 500.
NOT_TRANSIENT = (psycopg.ProgrammingError, psycopg.DataError, psycopg.IntegrityError, psycopg.NotSupportedError)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and not isinstance(exc, NOT_TRANSIENT)


def wants_json() -> bool:
    return request.path.startswith("/api/")


def unavailable_response(message: str, retry_after: int, detail: str | None = None):
    if wants_json():
        resp = jsonify(error="service_unavailable", message=message,
                       retry_after=retry_after)
    else:
        resp = make_response(render_template(
            "error.html", code=503, title="We'll be right back", message=message,
            retry_after=retry_after))
    resp.status_code = 503
    resp.headers["Retry-After"] = str(retry_after)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def init_app(app: Flask) -> None:
    retry = lambda: int(app.config.get("RETRY_AFTER", 5))  # noqa: E731

    @app.errorhandler(DatabaseUnavailable)
    def db_unavailable(exc: DatabaseUnavailable):
        if exc.path == "write":
            msg = ("Our database is switching over to a standby server right now, so "
                   "listings and purchases cannot be saved for a few seconds. Nothing "
                   "was charged or recorded; please try again shortly.")
        else:
            msg = ("Our database cannot be reached for a moment. Please try again in a "
                   "few seconds.")
        return unavailable_response(msg, retry())

    @app.errorhandler(PoolTimeout)
    @app.errorhandler(PoolClosed)
    @app.errorhandler(TooManyRequests)
    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(psycopg.InterfaceError)
    @app.errorhandler(psycopg.errors.ReadOnlySqlTransaction)
    def raw_unavailable(exc):  # safety net if something bypassed Database
        log.warning("database unavailable: %s", exc)
        return unavailable_response("Our database cannot be reached for a moment. "
                                    "Please try again in a few seconds.", retry())

    @app.errorhandler(psycopg.errors.UndefinedTable)
    @app.errorhandler(psycopg.errors.UndefinedColumn)
    def schema_not_ready(exc):
        log.error("schema not ready (run `python -m halite_web migrate`): %s", exc)
        return unavailable_response("The site is being upgraded. Please try again in a "
                                    "minute.", retry())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed",
                  409: "Conflict", 413: "Too large"}
        message = exc.description or ""
        if code == 404:
            message = "We could not find that page or car. It may have been removed."
        if wants_json():
            resp = jsonify(error=exc.name.lower().replace(" ", "_"), message=message)
        else:
            resp = render_template("error.html", code=code,
                                   title=titles.get(code, exc.name), message=message,
                                   retry_after=None)
        resp = app.make_response(resp)
        resp.status_code = code
        if code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, UNAVAILABLE_ERRORS) or is_transient(exc):
            return raw_unavailable(exc)
        log.exception("unexpected error on %s %s", request.method, request.path)
        msg = "Something went wrong on our side. It has been logged; please try again."
        if wants_json():
            resp = jsonify(error="internal_error", message=msg)
        else:
            resp = render_template("error.html", code=500, title="Sorry",
                                   message=msg, retry_after=None)
        resp = app.make_response(resp)
        resp.status_code = 500
        return resp
