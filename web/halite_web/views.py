"""Routes: catalogue, car page, sell, buy, status, health."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from flask import (Blueprint, abort, current_app, flash, g, jsonify, redirect,
                   render_template, request, session, url_for)

from . import catalog, cluster, forms
from .db import Database, DatabaseUnavailable
from .errors import unavailable_response

bp = Blueprint("web", __name__)
T = TypeVar("T")
MAX_BIGINT = 2**63 - 1


def db() -> Database:
    return current_app.extensions["halite_db"]


def in_ryw_window() -> bool:
    try:
        return float(session.get("ryw_until", 0)) > time.time()
    except (TypeError, ValueError):
        return False


def read(fn: Callable[[Any], T]) -> T:
    """Read via the read pool (write pool inside the read-your-writes window),
    falling back to the other pool."""
    result, g.backend = db().read(fn, prefer_write=in_ryw_window())
    return result


def write(fn: Callable[[Any], T], idempotent: bool = False) -> T:
    """One transaction on the primary; opens the read-your-writes window.
    ``idempotent``: running it twice records it once (tried again even when the
    connection failed during its COMMIT: halite_web.db.Database.write)."""
    result, g.backend = db().write(fn, idempotent=idempotent)
    session["ryw_until"] = time.time() + float(current_app.config["RYW_SECONDS"])
    return result


def _check_id(car_id: int) -> None:
    if car_id > MAX_BIGINT:
        abort(404)


# -- catalogue -------------------------------------------------------------------
def _catalogue():
    f = catalog.parse_filters(request.args, current_app.config["PER_PAGE"])
    return f, read(lambda cur: catalog.search(cur, f))


@bp.get("/")
def index():
    f, res = _catalogue()
    return render_template("catalogue.html", f=f, **res)


@bp.get("/api/cars")
def api_cars():
    f, res = _catalogue()
    return jsonify(
        total=res["total"], page=f.page, pages=res["pages"], per_page=f.per_page,
        sort=f.sort, warnings=f.warnings,
        cars=[{**c, "price": str(c["price"]), "created_at": c["created_at"].isoformat()}
              for c in res["cars"]])


# -- car page & buy ----------------------------------------------------------------
@bp.get("/cars/<int:car_id>")
def car(car_id: int):
    _check_id(car_id)
    c = read(lambda cur: catalog.get_car(cur, car_id))
    if c is None:
        abort(404)
    return render_template("car.html", car=c, errors={}, form={})


@bp.post("/cars/<int:car_id>/buy")
def buy(car_id: int):
    _check_id(car_id)
    values, errors = forms.validate_buy(request.form)
    if errors:
        c = read(lambda cur: catalog.get_car(cur, car_id))
        if c is None:
            abort(404)
        return render_template("car.html", car=c, errors=errors, form=values), 422

    def tx(cur):
        # The guard `status = 'available'` makes the sale atomic: a concurrent
        # buyer blocks on the row lock, then re-checks the condition and gets 0 rows.
        cur.execute("""UPDATE cars SET status = 'sold', buyer_name = %s, buyer_email = %s,
                              sold_at = now(), updated_at = now()
                       WHERE id = %s AND status = 'available'
                       RETURNING id, price""",
                    [values["buyer_name"], values["buyer_email"], car_id])
        row = cur.fetchone()
        if row is None:
            c = catalog.get_car(cur, car_id)
            if c is None:
                return "missing", None, None
            cur.execute("SELECT id, buyer_email FROM orders WHERE car_id = %s", [car_id])
            o = cur.fetchone()
            if o and o["buyer_email"].lower() == values["buyer_email"].lower():
                return "already_yours", o["id"], c      # e.g. a retried double click
            return "taken", None, c
        cur.execute("""INSERT INTO orders (car_id, buyer_name, buyer_email, price)
                       VALUES (%s, %s, %s, %s) RETURNING id""",
                    [car_id, values["buyer_name"], values["buyer_email"], row["price"]])
        return "ok", cur.fetchone()["id"], None

    # idempotent: a second run after an unknown COMMIT finds this buyer's own order
    # ("already_yours"), never a second sale
    outcome, order_id, c = write(tx, idempotent=True)
    if outcome == "missing":
        abort(404)
    if outcome == "ok":
        flash(f"Congratulations! Order #{order_id} is confirmed: the car is yours.", "success")
        return redirect(url_for("web.car", car_id=car_id), code=303)
    if outcome == "already_yours":
        flash(f"You have already bought this car (order #{order_id}).", "info")
        return redirect(url_for("web.car", car_id=car_id), code=303)
    if c["status"] == "reserved":
        msg = "Sorry, this car is reserved by another buyer."
    else:
        msg = "Sorry, this car has just been sold to another buyer."
    return render_template("car.html", car=c, errors={}, form=values,
                           conflict=msg), 409


# -- sell --------------------------------------------------------------------------
def _makes_and_models(cur) -> dict[str, list[str]]:
    cur.execute("""SELECT mk.name AS make, md.name AS model FROM makes mk
                   LEFT JOIN models md ON md.make_id = mk.id ORDER BY mk.name, md.name""")
    out: dict[str, list[str]] = {}
    for r in cur.fetchall():
        out.setdefault(r["make"], [])
        if r["model"]:
            out[r["make"]].append(r["model"])
    return out


@bp.route("/sell", methods=["GET", "POST"])
def sell():
    catalogue = read(_makes_and_models)
    if request.method == "GET":
        return render_template("sell.html", catalogue=catalogue, form={}, errors={})
    values, errors = forms.validate_sell(request.form, list(catalogue))
    if errors:
        return render_template("sell.html", catalogue=catalogue, form=values,
                               errors=errors), 422

    def tx(cur):
        cur.execute("""SELECT md.id FROM models md JOIN makes mk ON mk.id = md.make_id
                       WHERE mk.name = %s AND lower(md.name) = lower(%s)""",
                    [values["make"], values["model"]])
        row = cur.fetchone()
        if row is None:
            cur.execute("""INSERT INTO models (make_id, name, body_type)
                           SELECT id, %s, %s FROM makes WHERE name = %s
                           ON CONFLICT (make_id, name) DO UPDATE SET name = EXCLUDED.name
                           RETURNING id""",
                        [values["model"], values["body_type"], values["make"]])
            row = cur.fetchone()
            if row is None:
                return None
        cur.execute("""INSERT INTO cars (model_id, condition, year, price, mileage_km, color,
                                         fuel, transmission, body_type, description, location,
                                         seller_name, seller_email)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       RETURNING id""",
                    [row["id"], values["condition"], values["year"], values["price"],
                     values["mileage_km"], values["color"], values["fuel"],
                     values["transmission"], values["body_type"], values["description"],
                     values["location"], values["seller_name"], values["seller_email"]])
        return cur.fetchone()["id"]

    car_id = write(tx)
    if car_id is None:  # the make vanished between validation and insert
        errors = {"make": "Unknown make: choose one from the list."}
        return render_template("sell.html", catalogue=catalogue, form=values,
                               errors=errors), 422
    flash("Your car is listed. Good luck with the sale!", "success")
    return redirect(url_for("web.car", car_id=car_id), code=303)


# -- status & health -----------------------------------------------------------------
def _status() -> tuple[dict[str, Any], int]:
    cfg = current_app.config
    st = cluster.gather(db(), cfg["PATRONI_URLS"], float(cfg["PATRONI_TIMEOUT"]),
                        prefer_write=in_ryw_window(), patroni_ca_file=cfg.get("PATRONI_CA_FILE"))
    return st, (200 if st["primary"] is not None else 503)


@bp.get("/status")
def status():
    st, code = _status()
    resp = current_app.make_response((render_template("status.html", st=st), code))
    if code == 503:
        resp.headers["Retry-After"] = str(current_app.config["RETRY_AFTER"])
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/api/status")
def api_status():
    st, code = _status()
    resp = jsonify(st)
    resp.status_code = code
    if code == 503:
        resp.headers["Retry-After"] = str(current_app.config["RETRY_AFTER"])
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. ?db=1 also checks the read path."""
    if request.args.get("db"):
        try:
            read(lambda cur: cur.execute("SELECT 1").fetchone())
        except DatabaseUnavailable:
            return unavailable_response("database unreachable",
                                        int(current_app.config["RETRY_AFTER"]))
    return jsonify(status="ok")
