"""Catalogue: parse filter/sort/page query parameters and run the queries."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from .vocab import CONDITIONS, SORTS, DEFAULT_SORT

MAX_PER_PAGE = 100
_INT = re.compile(r"^\d{1,7}$")
_MONEY = re.compile(r"^\d{1,9}(\.\d{1,2})?$")


def clean(value: Any, max_len: int = 80) -> str:
    """Strip, drop NUL/control characters and bound the length of user text."""
    if value is None:
        return ""
    s = "".join(ch for ch in str(value) if ch >= " " or ch in "\n\t")
    return s.strip()[:max_len]


@dataclass
class Filters:
    condition: str = ""
    make: str = ""
    model: str = ""
    year_min: int | None = None
    year_max: int | None = None
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = 24
    warnings: list[str] = field(default_factory=list)

    def query_args(self, **overrides: Any) -> dict[str, Any]:
        """Query-string arguments reproducing these filters (for links)."""
        args = {
            "condition": self.condition, "make": self.make, "model": self.model,
            "year_min": self.year_min, "year_max": self.year_max,
            "price_min": self.price_min, "price_max": self.price_max,
            "sort": self.sort if self.sort != DEFAULT_SORT else None,
            "page": self.page if self.page != 1 else None,
        }
        args.update(overrides)
        return {k: v for k, v in args.items() if v not in (None, "")}


def _int(args: Mapping[str, str], name: str, label: str, lo: int, hi: int,
         warnings: list[str]) -> int | None:
    raw = clean(args.get(name), 20).replace(" ", "")
    if not raw:
        return None
    if not _INT.match(raw) or not lo <= int(raw) <= hi:
        warnings.append(f"Ignored {label}: {raw!r} is not a number between {lo} and {hi}.")
        return None
    return int(raw)


def _money(args: Mapping[str, str], name: str, label: str,
           warnings: list[str]) -> Decimal | None:
    raw = clean(args.get(name), 20).replace(" ", "").replace(",", "")
    if not raw:
        return None
    if not _MONEY.match(raw):
        warnings.append(f"Ignored {label}: {raw!r} is not a valid amount.")
        return None
    return Decimal(raw)


def parse_filters(args: Mapping[str, str], default_per_page: int = 24) -> Filters:
    w: list[str] = []
    f = Filters(warnings=w)
    cond = clean(args.get("condition"), 10).lower()
    if cond in CONDITIONS:
        f.condition = cond
    elif cond and cond != "any":
        w.append(f"Ignored condition {cond!r}: choose new or used.")
    f.make = clean(args.get("make"), 60)
    f.model = clean(args.get("model"), 60)
    f.year_min = _int(args, "year_min", "minimum year", 1900, 2100, w)
    f.year_max = _int(args, "year_max", "maximum year", 1900, 2100, w)
    f.price_min = _money(args, "price_min", "minimum price", w)
    f.price_max = _money(args, "price_max", "maximum price", w)
    if f.year_min and f.year_max and f.year_min > f.year_max:
        w.append("The minimum year is after the maximum year: no car can match.")
    if f.price_min is not None and f.price_max is not None and f.price_min > f.price_max:
        w.append("The minimum price is above the maximum price: no car can match.")
    sort = clean(args.get("sort"), 20)
    if sort in SORTS:
        f.sort = sort
    elif sort:
        w.append(f"Unknown sort order {sort!r}: showing newest listings first.")
    f.page = _int(args, "page", "page", 1, 1_000_000, w) or 1
    f.per_page = _int(args, "per_page", "page size", 1, MAX_PER_PAGE, w) or default_per_page
    return f


CAR_COLUMNS = """
    c.id, mk.name AS make, md.name AS model, c.condition, c.year, c.price,
    c.mileage_km, c.color, c.fuel, c.transmission, c.body_type, c.location,
    c.status, c.created_at
"""
FROM = """
    FROM cars c
    JOIN models md ON md.id = c.model_id
    JOIN makes mk ON mk.id = md.make_id
"""


def where_clause(f: Filters) -> tuple[str, list[Any]]:
    conds = ["c.status = 'available'"]
    params: list[Any] = []
    if f.condition:
        conds.append("c.condition = %s"); params.append(f.condition)
    if f.make:
        conds.append("lower(mk.name) = lower(%s)"); params.append(f.make)
    if f.model:
        conds.append("lower(md.name) = lower(%s)"); params.append(f.model)
    if f.year_min is not None:
        conds.append("c.year >= %s"); params.append(f.year_min)
    if f.year_max is not None:
        conds.append("c.year <= %s"); params.append(f.year_max)
    if f.price_min is not None:
        conds.append("c.price >= %s"); params.append(f.price_min)
    if f.price_max is not None:
        conds.append("c.price <= %s"); params.append(f.price_max)
    return " AND ".join(conds), params


def search(cur, f: Filters) -> dict[str, Any]:
    """Run inside a read transaction: one page of cars plus facets."""
    where, params = where_clause(f)
    cur.execute(f"SELECT count(*) AS n {FROM} WHERE {where}", params)
    total = cur.fetchone()["n"]
    pages = max(1, math.ceil(total / f.per_page))
    offset = (f.page - 1) * f.per_page
    order = SORTS[f.sort][1]
    cur.execute(
        f"SELECT {CAR_COLUMNS} {FROM} WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s",
        params + [f.per_page, offset])
    cars = cur.fetchall()
    cur.execute("SELECT name FROM makes ORDER BY name")
    makes = [r["name"] for r in cur.fetchall()]
    models: list[str] = []
    if f.make:
        cur.execute("""SELECT md.name FROM models md JOIN makes mk ON mk.id = md.make_id
                       WHERE lower(mk.name) = lower(%s) ORDER BY md.name""", [f.make])
        models = [r["name"] for r in cur.fetchall()]
    return {"cars": cars, "total": total, "pages": pages, "makes": makes, "models": models}


def get_car(cur, car_id: int) -> dict[str, Any] | None:
    cur.execute(f"""SELECT {CAR_COLUMNS}, c.description, c.seller_name, c.seller_email,
                           c.buyer_name, c.sold_at, c.updated_at
                    {FROM} WHERE c.id = %s""", [car_id])
    return cur.fetchone()
