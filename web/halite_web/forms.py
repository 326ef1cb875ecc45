"""Server-side validation of the sell and buy forms."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Mapping

from .catalog import clean
from .vocab import BODY_TYPES, CONDITIONS, FUELS, TRANSMISSIONS

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[A-Za-z]{2,}$")
NAME = re.compile(r"^[\w .,'&()/+-]+$", re.UNICODE)
MONEY = re.compile(r"^\d{1,9}(\.\d{1,2})?$")
INT = re.compile(r"^\d{1,9}$")
MIN_PRICE = Decimal("100")
MAX_PRICE = Decimal("5000000")
MAX_MILEAGE = 2_000_000


def current_year() -> int:
    return dt.date.today().year


def _money(raw: str) -> str:
    raw = raw.replace(" ", "").replace("\u00a0", "").replace("€", "")
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d{1,2})?", raw):
        raw = raw.replace(",", "")
    return raw


def validate_sell(form: Mapping[str, str], makes: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (clean values, errors by field)."""
    e: dict[str, str] = {}
    v: dict[str, Any] = {}
    year_now = current_year()

    make = clean(form.get("make"), 60)
    by_lower = {m.lower(): m for m in makes}
    if not make:
        e["make"] = "Choose the make of the car."
    elif make.lower() not in by_lower:
        e["make"] = f"Unknown make {make!r}: choose one from the list."
    else:
        make = by_lower[make.lower()]
    v["make"] = make

    model = clean(form.get("model"), 100)
    if not model:
        e["model"] = "Enter the model, e.g. Corolla or 3 Series."
    elif len(model) > 60 or not NAME.match(model):
        e["model"] = "The model name may have up to 60 letters, digits, spaces and - . / characters."
    v["model"] = model

    cond = clean(form.get("condition"), 10).lower()
    if cond not in CONDITIONS:
        e["condition"] = "Say whether the car is new or used."
    v["condition"] = cond

    raw = clean(form.get("year"), 10)
    year = int(raw) if INT.match(raw) else None
    if year is None:
        e["year"] = "Enter the model year as a number, e.g. 2019."
    elif not 1950 <= year <= year_now + 1:
        e["year"] = f"The year must be between 1950 and {year_now + 1}."
    elif cond == "new" and year < year_now - 1:
        e["year"] = f"A new car must be model year {year_now - 1} or later."
    v["year"] = year if year is not None else raw

    raw = clean(form.get("mileage_km"), 12).replace(" ", "").replace(",", "")
    mileage = int(raw) if INT.match(raw) else None
    if raw == "" and cond == "new":
        mileage = 0
    if mileage is None:
        e["mileage_km"] = "Enter the mileage in kilometres as a whole number."
    elif mileage > MAX_MILEAGE:
        e["mileage_km"] = f"The mileage cannot exceed {MAX_MILEAGE:,} km."
    elif cond == "new" and mileage != 0:
        e["mileage_km"] = "A new car must have a mileage of 0 km (list it as used otherwise)."
    elif cond == "used" and mileage == 0:
        e["mileage_km"] = "A used car has some kilometres on the clock: enter its mileage."
    v["mileage_km"] = mileage if mileage is not None else raw

    raw = _money(clean(form.get("price"), 20))
    price = Decimal(raw) if MONEY.match(raw) else None
    if price is None:
        e["price"] = "Enter the price as a number, e.g. 12500."
    elif not MIN_PRICE <= price <= MAX_PRICE:
        e["price"] = f"The price must be between €{MIN_PRICE:,.0f} and €{MAX_PRICE:,.0f}."
    v["price"] = price if price is not None else raw

    for name, choices, msg in (
        ("fuel", FUELS, "Choose the fuel type."),
        ("transmission", TRANSMISSIONS, "Choose manual or automatic."),
        ("body_type", BODY_TYPES, "Choose the body type."),
    ):
        val = clean(form.get(name), 20).lower()
        if val not in choices:
            e[name] = msg
        v[name] = val

    color = clean(form.get("color"), 40).lower()
    if not color:
        e["color"] = "Enter the colour."
    elif len(color) > 30 or not re.fullmatch(r"[a-z][a-z \-]*", color):
        e["color"] = "The colour may only contain letters, spaces and hyphens (30 at most)."
    v["color"] = color

    v["location"] = clean(form.get("location"), 80)

    desc = clean(form.get("description"), 5000)
    if len(desc) < 20:
        e["description"] = "Describe the car in at least 20 characters (condition, history, options)."
    elif len(desc) > 4000:
        e["description"] = "The description may have 4000 characters at most."
    v["description"] = desc

    _person(form, "seller", v, e)
    return v, e


def _person(form: Mapping[str, str], who: str, v: dict[str, Any], e: dict[str, str]) -> None:
    name = clean(form.get(f"{who}_name"), 100)
    if len(name) < 2:
        e[f"{who}_name"] = "Enter your name."
    elif len(name) > 80:
        e[f"{who}_name"] = "Your name may have 80 characters at most."
    v[f"{who}_name"] = name
    email = clean(form.get(f"{who}_email"), 300)
    if not email:
        e[f"{who}_email"] = "Enter your e-mail address."
    elif len(email) > 254 or not EMAIL.match(email):
        e[f"{who}_email"] = f"{email!r} does not look like an e-mail address."
    v[f"{who}_email"] = email


def validate_buy(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    v: dict[str, Any] = {}
    e: dict[str, str] = {}
    _person(form, "buyer", v, e)
    return v, e
