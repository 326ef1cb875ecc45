"""Realistic test data: cars for sale, new and used, with plausible prices."""
from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

import psycopg

from .catalogue_data import FUEL_CODES, MAKES

log = logging.getLogger(__name__)

FIRST_YEAR, LAST_YEAR = 2005, 2026
SEED_LOCK = 0x4841_4C57_5345_4544  # "HALWSEED": serialises concurrent seeders

COLORS = [("white", 22), ("black", 18), ("grey", 17), ("silver", 11), ("blue", 11),
          ("red", 8), ("green", 3), ("brown", 2), ("beige", 2), ("orange", 2),
          ("yellow", 1), ("purple", 1)]
CITIES = ["Berlin", "Munich", "Hamburg", "Cologne", "Frankfurt", "Stuttgart", "Vienna",
          "Zurich", "Paris", "Lyon", "Marseille", "Brussels", "Antwerp", "Amsterdam",
          "Rotterdam", "Utrecht", "Milan", "Turin", "Madrid", "Barcelona", "Valencia",
          "Lisbon", "Porto", "Copenhagen", "Stockholm", "Oslo", "Warsaw", "Prague",
          "Budapest", "Dublin", "Manchester", "Leeds"]
FIRST = ["Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Giulia", "Hugo", "Ines",
         "Jonas", "Katarzyna", "Lars", "Marie", "Noah", "Olga", "Pablo", "Quentin",
         "Rosa", "Sven", "Tanja", "Umar", "Vera", "Wim", "Yusuf", "Zoe", "Lucas",
         "Emma", "Mateo", "Sofia", "Liam"]
LAST = ["Müller", "Schmidt", "Dubois", "Rossi", "García", "Silva", "Jansen", "Nowak",
        "Novák", "Kowalski", "Andersen", "Nielsen", "Martin", "Bernard", "Ferrari",
        "Fernández", "Peeters", "de Vries", "Horvat", "Lindqvist", "O'Brien", "Smith",
        "Weber", "Fischer", "Moreau", "Bianchi", "Costa", "Berg", "Hansen", "Kovács"]
DEALER_FMT = ["{make} Centre {city}", "Autohaus {last} {city}", "{city} Motors",
              "{make} Store {city}", "Garage {last}", "{last} & Sons Automobiles"]
FEATURES_USED = [
    "full service history", "recently serviced", "new tyres", "cambelt changed", "MOT/inspection valid for two years",
    "non-smoker car", "garage kept", "minor scratches on the rear bumper",
    "small dent on the passenger door", "winter tyres included", "tow bar",
    "panoramic roof", "heated seats", "leather interior", "adaptive cruise control",
    "Apple CarPlay and Android Auto", "parking sensors front and rear",
    "reversing camera", "LED headlights", "keyless entry", "navigation system",
    "roof rails", "alloy wheels", "dual-zone climate control",
]
FEATURES_NEW = [
    "factory warranty", "adaptive cruise control", "lane keeping assist",
    "360° camera", "heated steering wheel", "wireless phone charging",
    "matrix LED headlights", "head-up display", "premium sound system",
    "panoramic roof", "metallic paint", "18-inch alloy wheels", "heat pump",
]
DEPRECIATION = {"budget": 0.10, "mainstream": 0.10, "premium": 0.12, "luxury": 0.09}


@dataclass
class Car:
    make: str
    model: str
    condition: str
    year: int
    price: Decimal
    mileage_km: int
    color: str
    fuel: str
    transmission: str
    body_type: str
    description: str
    location: str
    seller_name: str
    seller_email: str
    status: str
    buyer_name: str | None
    buyer_email: str | None
    sold_at: dt.datetime | None
    created_at: dt.datetime


def _email(name: str, rng: random.Random, domain: str | None = None) -> str:
    local = "".join(ch for ch in name.lower().replace(" ", ".")
                    if ch.isascii() and (ch.isalnum() or ch == "."))
    local = local.strip(".") or "seller"
    domain = domain or rng.choice(["example.com", "example.org", "example.net", "mail.example"])
    return f"{local}{rng.randint(1, 99)}@{domain}"


class CarGenerator:
    def __init__(self, seed: int | None = 42, now: dt.datetime | None = None):
        self.rng = random.Random(seed)
        self.now = now or dt.datetime.now(dt.timezone.utc)
        self.current_year = min(self.now.year, LAST_YEAR)
        # flat list of (make, tier, model...) weighted: mainstream sell more
        self.models = []
        for make, (_country, tier, models) in MAKES.items():
            w = {"budget": 3, "mainstream": 4, "premium": 2, "luxury": 1}[tier]
            for m in models:
                self.models.append((make, tier, m, w))
        self.weights = [x[3] for x in self.models]

    def list_price(self, base: int, year: int) -> float:
        # list prices grew ~3 %/year; base prices are in current money
        return base / (1.03 ** (self.current_year - year))

    def car(self) -> Car:
        rng = self.rng
        make, tier, (model, body, base, fuels, first, last), _ = rng.choices(
            self.models, weights=self.weights)[0]
        last = min(last or LAST_YEAR, LAST_YEAR)
        first = max(first, FIRST_YEAR)
        on_sale_now = last >= self.current_year - 1
        condition = "new" if on_sale_now and rng.random() < 0.3 else "used"
        if condition == "new":
            year = rng.choice([y for y in (self.current_year - 1, self.current_year) if first <= y <= last]
                              or [last])
        else:
            # skew used cars towards younger vehicles
            span = last - first
            year = last - min(span, int(abs(rng.gauss(0, 5.5))))
        fuel = FUEL_CODES[rng.choice(fuels)]
        if fuel == "electric" and year < 2012 and len(fuels) > 1:
            fuel = FUEL_CODES[fuels[0]]
        age = max(0, self.current_year - year)

        auto_p = {"budget": 0.15, "mainstream": 0.35, "premium": 0.75, "luxury": 0.95}[tier]
        auto_p = min(0.98, auto_p + 0.025 * (year - 2010))
        transmission = ("automatic" if fuel in ("electric", "hybrid", "plug-in hybrid")
                        or rng.random() < auto_p else "manual")

        fuel_factor = {"electric": 1.12, "plug-in hybrid": 1.1, "hybrid": 1.05,
                       "diesel": 1.04, "lpg": 0.97}.get(fuel, 1.0)
        price = self.list_price(base, year) * fuel_factor
        if condition == "new":
            mileage = 0
            price *= rng.uniform(1.0, 1.25)  # trim and options
            price = max(1000, round(price / 100) * 100 - 10)  # 34,990 style
        else:
            annual = rng.gauss(16000 if fuel == "diesel" else 12500, 4000)
            annual = max(3000.0, annual)
            mileage = int(annual * max(age, 0.1) * rng.uniform(0.8, 1.2))
            mileage = max(rng.randint(50, 900), round(mileage, -2))
            dep = DEPRECIATION[tier] + (0.02 if fuel == "electric" else 0.0)
            value = price * rng.uniform(1.0, 1.2) * 0.82 * (1 - dep) ** max(age - 1, 0)
            expected_km = 13000 * max(age, 1)
            value *= max(0.6, 1 - 0.15 * (mileage - expected_km) / max(expected_km, 1))
            value *= rng.uniform(0.92, 1.08)
            value = max(value, base * 0.05, 800)
            price = round(value / 50) * 50
        price = Decimal(int(price))

        color = rng.choices([c for c, _ in COLORS], weights=[w for _, w in COLORS])[0]
        city = rng.choice(CITIES)
        first_n, last_n = rng.choice(FIRST), rng.choice(LAST)
        if condition == "new" or rng.random() < 0.45:
            seller = rng.choice(DEALER_FMT).format(make=make, city=city, last=last_n)
            seller_email = _email(seller, rng, "dealer.example")
        else:
            seller = f"{first_n} {last_n}"
            seller_email = _email(seller, rng)

        description = self.describe(make, model, condition, year, fuel, transmission,
                                    mileage, color)
        created = self.now - dt.timedelta(days=rng.uniform(0, 120))
        roll = rng.random()
        status, buyer, buyer_email, sold_at = "available", None, None, None
        if roll < 0.07:
            status = "sold"
        elif roll < 0.10:
            status = "reserved"
        if status != "available":
            buyer = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            buyer_email = _email(buyer, rng)
            sold_at = created + (self.now - created) * rng.uniform(0.1, 1.0)
            if status == "reserved":
                sold_at = None
        return Car(make, model, condition, year, price, mileage, color, fuel, transmission,
                   body, description, city, seller, seller_email, status, buyer,
                   buyer_email, sold_at, created)

    def describe(self, make: str, model: str, condition: str, year: int, fuel: str,
                 transmission: str, mileage: int, color: str) -> str:
        rng = self.rng
        if condition == "new":
            feats = rng.sample(FEATURES_NEW, 4)
            return (f"Brand new {year} {make} {model} in {color}, {fuel}, {transmission} "
                    f"gearbox. Comes with {', '.join(feats[:3])} and {feats[3]}. "
                    f"{rng.choice([3, 5, 7])}-year manufacturer warranty; delivery in "
                    f"{rng.choice([1, 2, 3, 6])} weeks. Finance and part-exchange available.")
        age = self.current_year - year
        owners = min(4, 1 + int(age / rng.uniform(3, 8)))
        feats = [("one previous owner", "two previous owners", "three previous owners",
                  "four previous owners")[owners - 1]]
        feats += rng.sample(FEATURES_USED, rng.randint(2, 4))
        listed = "; ".join(feats)
        opener = rng.choice([
            f"Well maintained {year} {make} {model}",
            f"Reliable {make} {model} from {year}",
            f"{color.capitalize()} {make} {model} ({year})",
            f"Lovely {year} {model} by {make}",
        ])
        return (f"{opener}, {mileage:,} km, {fuel} with {transmission} gearbox. "
                f"{listed[0].upper()}{listed[1:]}. "
                + rng.choice(["Viewing welcome.", "Test drive by appointment.",
                              "Priced to sell.", "Open to reasonable offers.",
                              "Happy to answer any questions."]))

    def cars(self, n: int) -> Iterator[Car]:
        for _ in range(n):
            yield self.car()


class SeedRefused(Exception):
    pass


def seed(dsn: str, n_cars: int = 3000, rand_seed: int | None = 42, force: bool = False,
         log_fn=print) -> dict[str, Any]:
    """Insert makes/models (idempotently) and n_cars cars in ONE transaction.

    Refuses (SeedRefused) when cars already exist unless force=True, in which
    case the cars are added to the existing ones."""
    gen = CarGenerator(rand_seed)
    with psycopg.connect(dsn, connect_timeout=10, application_name="halite-web-seed") as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [SEED_LOCK])
            existing = conn.execute("SELECT count(*) FROM cars").fetchone()[0]
            if existing and not force:
                raise SeedRefused(f"{existing} cars already exist: not seeding "
                                  "(use --force to add more)")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO makes (name, country) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO NOTHING",
                    [(make, country) for make, (country, _t, _m) in MAKES.items()])
                cur.executemany(
                    "INSERT INTO models (make_id, name, body_type) "
                    "SELECT id, %s, %s FROM makes WHERE name = %s "
                    "ON CONFLICT (make_id, name) DO NOTHING",
                    [(m[0], m[1], make) for make, (_c, _t, ms) in MAKES.items() for m in ms])
                cur.execute("SELECT mk.name, md.name, md.id FROM models md "
                            "JOIN makes mk ON mk.id = md.make_id")
                model_ids = {(a, b): i for a, b, i in cur.fetchall()}
                cols = ("model_id", "condition", "year", "price", "mileage_km", "color",
                        "fuel", "transmission", "body_type", "description", "location",
                        "seller_name", "seller_email", "status", "buyer_name",
                        "buyer_email", "sold_at", "created_at", "updated_at")
                with cur.copy(f"COPY cars ({', '.join(cols)}) FROM STDIN") as copy:
                    for c in gen.cars(n_cars):
                        copy.write_row((model_ids[(c.make, c.model)], c.condition, c.year,
                                        c.price, c.mileage_km, c.color, c.fuel,
                                        c.transmission, c.body_type, c.description,
                                        c.location, c.seller_name, c.seller_email,
                                        c.status, c.buyer_name, c.buyer_email, c.sold_at,
                                        c.created_at, c.sold_at or c.created_at))
                cur.execute("""
                    INSERT INTO orders (car_id, buyer_name, buyer_email, price, created_at)
                    SELECT c.id, c.buyer_name, c.buyer_email, c.price, c.sold_at
                    FROM cars c
                    WHERE c.status = 'sold'
                      AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.car_id = c.id)""")
                orders = cur.rowcount
        counts = conn.execute("""SELECT (SELECT count(*) FROM makes), (SELECT count(*) FROM models),
                                        (SELECT count(*) FROM cars), (SELECT count(*) FROM orders)""").fetchone()
    result = dict(zip(("makes", "models", "cars", "orders"), counts))
    result["inserted_cars"] = n_cars
    result["inserted_orders"] = orders
    log_fn(f"seeded {n_cars} cars ({orders} sold with orders); totals: "
           f"{result['makes']} makes, {result['models']} models, {result['cars']} cars, "
           f"{result['orders']} orders")
    return result
