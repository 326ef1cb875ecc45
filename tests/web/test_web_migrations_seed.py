"""Migrations, seeding and the data generator."""
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from halite_web.generator import CarGenerator, SeedRefused, seed
from halite_web.migrate import discover, migrate

WEB = Path(__file__).resolve().parents[2] / "web"


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(WEB))
    return subprocess.run([sys.executable, "-m", "halite_web", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_first_migration_applied_everything(db, sql):
    files = discover()
    assert [m.version for m in files] == [1, 2]
    assert db["applied"] == [1, 2]
    assert sql("SELECT version, name FROM schema_migrations ORDER BY version") == \
        [(1, "init"), (2, "catalogue_indexes")]


def test_migrate_is_idempotent(db, sql):
    before = sql("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert migrate(db["dsn"], log_fn=lambda *_: None) == []
    assert migrate(db["dsn"], log_fn=lambda *_: None) == []
    assert sql("SELECT version, applied_at FROM schema_migrations ORDER BY version") == before


def test_cli_migrate_idempotent(db):
    r = run_cli("migrate", "--dsn", db["dsn"])
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout


def test_cli_migrate_refuses_replica(db):
    r = run_cli("migrate", "--dsn", db["replica_dsn"])
    assert r.returncode == 1
    assert "replica" in r.stderr and "Traceback" not in r.stderr


def test_every_table_has_primary_key_and_identity(db, sql):
    tables = {t for (t,) in sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"makes", "models", "cars", "orders", "schema_migrations"} <= tables
    no_pk = sql("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind = 'r'
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                     WHERE k.conrelid = c.oid AND k.contype = 'p')""")
    assert no_pk == []
    ident = dict(sql("""SELECT table_name, data_type FROM information_schema.columns
                        WHERE table_schema = 'public' AND column_name = 'id'
                          AND is_identity = 'YES'"""))
    assert ident == {"makes": "bigint", "models": "bigint", "cars": "bigint",
                     "orders": "bigint"}


def test_seed_refuses_when_cars_exist(db, sql):
    n = sql("SELECT count(*) FROM cars")[0][0]
    with pytest.raises(SeedRefused):
        seed(db["dsn"], 10, 1, log_fn=lambda *_: None)
    r = run_cli("seed", "--dsn", db["dsn"], "--cars", "10")
    assert r.returncode == 0 and "skipped" in r.stdout
    assert sql("SELECT count(*) FROM cars")[0][0] == n


def test_seeded_data_is_realistic(db, sql):
    assert sql("SELECT count(*) FROM cars")[0][0] >= 300
    assert sql("""SELECT count(DISTINCT mk.id) FROM cars c JOIN models md ON md.id = c.model_id
                  JOIN makes mk ON mk.id = md.make_id""")[0][0] >= 25
    assert sql("SELECT count(DISTINCT model_id) FROM cars")[0][0] >= 100
    assert sql("SELECT count(*) FROM cars WHERE condition = 'new' AND mileage_km <> 0")[0][0] == 0
    assert sql("SELECT count(*) FROM cars WHERE condition = 'used' AND mileage_km = 0")[0][0] == 0
    assert sql("SELECT count(*) FROM cars WHERE price <= 0")[0][0] == 0
    assert sql("SELECT min(year), max(year) FROM cars")[0][0] >= 2005
    assert sql("SELECT max(year) FROM cars")[0][0] <= 2026
    new, used = sql("""SELECT count(*) FILTER (WHERE condition = 'new'),
                              count(*) FILTER (WHERE condition = 'used') FROM cars""")[0]
    assert new >= 30 and used >= 150
    # mileage grows with age, prices fall with age
    young, old = sql("""SELECT avg(mileage_km) FILTER (WHERE year >= 2023),
                               avg(mileage_km) FILTER (WHERE year <= 2015)
                        FROM cars WHERE condition = 'used'""")[0]
    assert old > 2 * young
    young, old = sql("""SELECT avg(price) FILTER (WHERE year >= 2023),
                               avg(price) FILTER (WHERE year <= 2015)
                        FROM cars WHERE condition = 'used'""")[0]
    assert young > 2 * old
    # a new Porsche costs more than a new Dacia
    porsche, dacia = sql("""SELECT min(price) FILTER (WHERE mk.name = 'Porsche'),
                                   max(price) FILTER (WHERE mk.name = 'Dacia')
                            FROM cars c JOIN models md ON md.id = c.model_id
                            JOIN makes mk ON mk.id = md.make_id WHERE c.condition = 'new'""")[0]
    if porsche is not None and dacia is not None:
        assert porsche > dacia
    # descriptions, colours, fuels are varied; every sold car has exactly one order
    assert sql("SELECT count(DISTINCT color) FROM cars")[0][0] >= 6
    assert sql("SELECT count(DISTINCT fuel) FROM cars")[0][0] >= 4
    assert sql("SELECT count(DISTINCT description) FROM cars")[0][0] == \
        sql("SELECT count(*) FROM cars")[0][0]
    assert sql("""SELECT count(*) FROM cars c WHERE status = 'sold'
                  AND (SELECT count(*) FROM orders o WHERE o.car_id = c.id) <> 1""")[0][0] == 0


def test_generator_deterministic_and_plausible():
    a = [c.__dict__ for c in CarGenerator(7).cars(200)]
    b = [c.__dict__ for c in CarGenerator(7).cars(200)]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("created_at", "sold_at")}
                          for r in rows]
    assert strip(a) == strip(b)
    assert strip(a) != strip([c.__dict__ for c in CarGenerator(8).cars(200)])
    gen = CarGenerator(1)
    cars = list(gen.cars(3000))
    assert len({c.make for c in cars}) >= 30
    for c in cars:
        assert c.price > 0
        assert 2005 <= c.year <= 2026
        if c.condition == "new":
            assert c.mileage_km == 0 and c.year >= 2025
        else:
            assert 0 < c.mileage_km < 700_000
        if c.fuel == "electric":
            assert c.transmission == "automatic"
    assert any(c.make == "Toyota" and c.model == "Corolla" for c in cars)
    assert any(c.make == "BMW" and c.model == "3 Series" for c in cars)


def test_cli_on_a_fresh_database(db, sql):
    sql("DROP DATABASE IF EXISTS halite_cli_test")
    sql("CREATE DATABASE halite_cli_test")
    fresh = db["dsn"].replace("dbname=postgres", "dbname=halite_cli_test")
    try:
        r = run_cli("seed", "--dsn", fresh, "--cars", "5")
        assert r.returncode == 1 and "migrate" in r.stderr and "Traceback" not in r.stderr
        r = run_cli("migrate", "--dsn", fresh)
        assert r.returncode == 0 and "applied 001_init.sql" in r.stdout
        assert "applied 002_catalogue_indexes.sql" in r.stdout
        r = run_cli("seed", "--dsn", fresh, "--cars", "120", "--seed", "3")
        assert r.returncode == 0, r.stderr
        assert "seeded 120 cars" in r.stdout
        r = run_cli("seed", "--dsn", fresh, "--cars", "120")
        assert r.returncode == 0 and "skipped" in r.stdout
        r = run_cli("seed", "--dsn", fresh, "--cars", "30", "--force")
        assert r.returncode == 0 and "150 cars" in r.stdout
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT count(*) FROM cars").fetchone()[0] == 150
            # reference data was not duplicated by the forced run
            assert conn.execute("SELECT count(*) FROM makes").fetchone()[0] == \
                conn.execute("SELECT count(DISTINCT name) FROM makes").fetchone()[0]
            # identity sequences are ordinary sequences (logical replication + setval)
            seq = conn.execute("SELECT pg_get_serial_sequence('cars', 'id')").fetchone()[0]
            assert seq == "public.cars_id_seq"
    finally:
        sql("DROP DATABASE IF EXISTS halite_cli_test WITH (FORCE)")
