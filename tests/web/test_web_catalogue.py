"""Catalogue filters, sorting and pagination; the car page."""
import re

import pytest

IDS = re.compile(r'<li class="card" data-car-id="(\d+)"')
BASE = """FROM cars c JOIN models md ON md.id = c.model_id JOIN makes mk ON mk.id = md.make_id
          WHERE c.status = 'available'"""


def page_ids(client, query=""):
    resp = client.get("/" + query)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return [int(i) for i in IDS.findall(resp.get_data(as_text=True))], resp


@pytest.fixture(autouse=True)
def _synced(replica_sync):
    replica_sync()   # pages are read from the replica, expectations from the primary


def test_default_page_newest_first(client, sql):
    ids, resp = page_ids(client)
    expected = [r[0] for r in sql(f"SELECT c.id {BASE} ORDER BY c.created_at DESC, c.id DESC LIMIT 24")]
    assert ids == expected
    total = sql(f"SELECT count(*) {BASE}")[0][0]
    assert f"{total:,}</strong> cars for sale" in resp.get_data(as_text=True)
    # served from the replica through the read pool
    assert resp.headers["X-Halite-Pool"] == "read"
    assert resp.headers["X-Halite-Backend"] == "127.0.0.1:55433"


def test_filters_condition_make_year_price(client, sql):
    make = sql(f"""SELECT mk.name {BASE} GROUP BY mk.name ORDER BY count(*) DESC LIMIT 1""")[0][0]
    ids, _ = page_ids(client, f"?condition=used&make={make.lower()}&year_min=2012"
                              f"&year_max=2024&price_min=3000&price_max=60000&sort=price_asc&per_page=100")
    expected = [r[0] for r in sql(
        f"""SELECT c.id {BASE} AND c.condition = 'used' AND mk.name = %s AND c.year BETWEEN 2012 AND 2024
            AND c.price BETWEEN 3000 AND 60000 ORDER BY c.price, c.id""", [make])]
    assert expected, "test data should match something"
    assert ids == expected


def test_filter_model_and_new(client, sql):
    make, model = sql(f"SELECT mk.name, md.name {BASE} GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1")[0]
    ids, resp = page_ids(client, f"?make={make}&model={model}&per_page=100")
    expected = [r[0] for r in sql(f"SELECT c.id {BASE} AND mk.name = %s AND md.name = %s "
                                  "ORDER BY c.created_at DESC, c.id DESC", [make, model])]
    assert ids == expected
    assert f"<option selected>{model}</option>" in resp.get_data(as_text=True)
    ids, _ = page_ids(client, "?condition=new&per_page=100")
    conds = {r[0] for r in sql("SELECT condition FROM cars WHERE id = ANY(%s)", [ids])}
    assert ids and conds == {"new"}
    assert len(ids) == min(100, sql(f"SELECT count(*) {BASE} AND c.condition = 'new'")[0][0])


@pytest.mark.parametrize("sort,order", [
    ("price_asc", "c.price ASC, c.id ASC"),
    ("price_desc", "c.price DESC, c.id DESC"),
    ("year_desc", "c.year DESC, c.id DESC"),
    ("year_asc", "c.year ASC, c.id ASC"),
    ("mileage_asc", "c.mileage_km ASC, c.id ASC"),
    ("newest", "c.created_at DESC, c.id DESC"),
])
def test_sorting(client, sql, sort, order):
    ids, _ = page_ids(client, f"?sort={sort}&per_page=50")
    assert ids == [r[0] for r in sql(f"SELECT c.id {BASE} ORDER BY {order} LIMIT 50")]


def test_pagination_covers_everything_once(client, sql):
    total = sql(f"SELECT count(*) {BASE} AND c.condition = 'used'")[0][0]
    seen, page = [], 1
    while True:
        ids, resp = page_ids(client, f"?condition=used&sort=price_asc&per_page=40&page={page}")
        if not ids:
            break
        html = resp.get_data(as_text=True)
        assert (f"page={page + 1}" in html) == (page * 40 < total)
        seen += ids
        page += 1
    assert page - 1 == -(-total // 40)
    assert seen == [r[0] for r in sql(f"SELECT c.id {BASE} AND c.condition = 'used' ORDER BY c.price, c.id")]
    # beyond the last page: empty but fine
    ids, resp = page_ids(client, "?page=999")
    assert ids == [] and "No car matches" in resp.get_data(as_text=True)


def test_bad_filters_are_ignored_with_warnings(client, sql):
    ids, resp = page_ids(client, "?year_min=abc&price_max=-5&page=0&sort=bogus&condition=old"
                                 "&make=%00Nope&per_page=9999")
    html = resp.get_data(as_text=True)
    assert "Ignored minimum year" in html and "Unknown sort order" in html
    assert "Ignored condition" in html
    assert ids == []   # make 'Nope' does not exist
    ids, _ = page_ids(client, "?year_min=2030")
    assert ids == []


def test_api_cars_matches_page(client, sql):
    resp = client.get("/api/cars?condition=used&sort=mileage_asc&per_page=10&page=2")
    assert resp.status_code == 200
    data = resp.get_json()
    expected = [r[0] for r in sql(f"SELECT c.id {BASE} AND c.condition = 'used' "
                                  "ORDER BY c.mileage_km, c.id LIMIT 10 OFFSET 10")]
    assert [c["id"] for c in data["cars"]] == expected
    assert data["total"] == sql(f"SELECT count(*) {BASE} AND c.condition = 'used'")[0][0]


def test_car_page(client, sql):
    car_id, make, model, price = sql(f"SELECT c.id, mk.name, md.name, c.price {BASE} ORDER BY c.id LIMIT 1")[0]
    resp = client.get(f"/cars/{car_id}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert f"{make} {model}" in html and f"€{price:,.0f}" in html
    assert 'name="buyer_email"' in html


@pytest.mark.parametrize("url", ["/cars/999999999", "/cars/0", "/cars/abc",
                                 "/cars/99999999999999999999999", "/nope"])
def test_not_found(client, url):
    resp = client.get(url)
    assert resp.status_code == 404
    html = resp.get_data(as_text=True)
    assert "could not find" in html and "Traceback" not in html
