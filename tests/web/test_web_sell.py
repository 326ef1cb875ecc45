"""The sell form: validation, success, read-your-writes, CSRF."""
import time

GOOD = {
    "make": "Toyota", "model": "Corolla", "condition": "used", "year": "2018",
    "mileage_km": "84 500", "price": "13,900", "fuel": "hybrid", "transmission": "automatic",
    "body_type": "hatchback", "color": "silver", "location": "Utrecht",
    "description": "One owner, full Toyota service history, new tyres last spring.",
    "seller_name": "Ada Lovelace", "seller_email": "ada@example.com",
}


def post_sell(client, get_csrf, **changes):
    data = {**GOOD, **changes, "csrf_token": get_csrf(client, "/sell")}
    return client.post("/sell", data=data)


def test_sell_form_renders(client):
    resp = client.get("/sell")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<option>Toyota</option>" in html and 'name="csrf_token"' in html


def test_empty_form_lists_every_problem(client, get_csrf, sql):
    before = sql("SELECT count(*) FROM cars")[0][0]
    resp = client.post("/sell", data={"csrf_token": get_csrf(client, "/sell")})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    for msg in ("Choose the make of the car.", "Enter the model", "new or used",
                "Enter the model year", "Enter the price", "Choose the fuel type.",
                "Enter your name.", "Enter your e-mail address.", "at least 20 characters"):
        assert msg in html, msg
    assert sql("SELECT count(*) FROM cars")[0][0] == before


def test_specific_validation_messages(client, get_csrf):
    cases = [
        ({"condition": "new", "year": "2026", "mileage_km": "1200"}, "A new car must have a mileage of 0 km"),
        ({"condition": "new", "year": "2015", "mileage_km": "0"}, "A new car must be model year 2025 or later"),
        ({"condition": "used", "mileage_km": "0"}, "A used car has some kilometres"),
        ({"price": "50"}, "The price must be between €100 and €5,000,000."),
        ({"price": "12k"}, "Enter the price as a number"),
        ({"year": "1899"}, "The year must be between 1950 and"),
        ({"seller_email": "ada@"}, "does not look like an e-mail address"),
        ({"make": "Trabantz"}, "Unknown make &#39;Trabantz&#39;"),
        ({"fuel": "steam"}, "Choose the fuel type."),
        ({"description": "nice"}, "at least 20 characters"),
        ({"model": "<script>alert(1)</script>"}, "The model name may have up to 60"),
    ]
    for changes, msg in cases:
        resp = post_sell(client, get_csrf, **changes)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422, changes
        assert msg in html, (changes, msg)
        assert "<script>alert(1)</script>" not in html   # escaped when echoed back


def test_sell_success_redirects_to_new_car(client, get_csrf, sql):
    resp = post_sell(client, get_csrf, seller_name="Grace Hopper")
    assert resp.status_code == 303
    car_id = int(resp.headers["Location"].rstrip("/").split("/")[-1])
    row = sql("""SELECT mk.name, md.name, c.price, c.mileage_km, c.status, c.seller_name
                 FROM cars c JOIN models md ON md.id = c.model_id JOIN makes mk ON mk.id = md.make_id
                 WHERE c.id = %s""", [car_id])[0]
    assert row == ("Toyota", "Corolla", 13900, 84500, "available", "Grace Hopper")
    page = client.get(f"/cars/{car_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Your car is listed" in html and "Toyota Corolla" in html
    # read-your-writes: right after our own write, reads use the primary
    assert page.headers["X-Halite-Pool"] == "write"
    assert page.headers["X-Halite-Backend"] == "127.0.0.1:55432"
    # another visitor reads from the replica
    other = client.application.test_client()
    assert other.get("/").headers["X-Halite-Pool"] == "read"


def test_sell_new_car_with_new_model(client, get_csrf, sql):
    resp = post_sell(client, get_csrf, condition="new", year="2026", mileage_km="",
                     model="Corolla Cross GR", price="38990", body_type="suv")
    assert resp.status_code == 303
    car_id = int(resp.headers["Location"].split("/")[-1])
    assert sql("""SELECT c.mileage_km, md.name, md.body_type FROM cars c
                  JOIN models md ON md.id = c.model_id WHERE c.id = %s""", [car_id]) == \
        [(0, "Corolla Cross GR", "suv")]


def test_read_your_writes_window_expires(app_factory, get_csrf):
    app = app_factory(RYW_SECONDS=0.5)
    client = app.test_client()
    assert post_sell(client, get_csrf).status_code == 303
    assert client.get("/").headers["X-Halite-Pool"] == "write"
    time.sleep(0.6)
    assert client.get("/").headers["X-Halite-Pool"] == "read"


def test_post_without_csrf_token_is_refused(client, sql):
    before = sql("SELECT count(*) FROM cars")[0][0]
    resp = client.post("/sell", data=GOOD)
    assert resp.status_code == 400
    assert "Please reload the page" in resp.get_data(as_text=True)
    assert sql("SELECT count(*) FROM cars")[0][0] == before


def test_sell_page_inline_scripts_are_allowed_by_the_sites_csp(client):
    """nginx sends halite.view.site_csp(): every inline script the site serves must be one
    of its hashes, as the browser computes them (over the script's text as served)."""
    import base64
    import hashlib
    import re

    from halite import view

    page = client.get("/sell").get_data(as_text=True)
    scripts = [body for attrs, body in re.findall(r"<script(\s[^>]*)?>(.*?)</script>", page, re.S)
               if "application/json" not in attrs]
    assert scripts, "the sell page has an inline script (the model list)"
    csp = view.site_csp()
    for body in scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_session_cookie_is_marked_secure_when_site_env_says_so(app_factory):
    """site.env's HALITE_WEB_SESSION_COOKIE_SECURE=1 (the site behind https) marks the session cookie Secure."""
    from halite_web.config import load_config

    assert load_config(environ={"HALITE_WEB_SESSION_COOKIE_SECURE": "1"})["SESSION_COOKIE_SECURE"] is True
    assert load_config(environ={"HALITE_WEB_SESSION_COOKIE_SECURE": "0"})["SESSION_COOKIE_SECURE"] is False
    assert "SESSION_COOKIE_SECURE" not in load_config(environ={})  # Flask's default: not Secure
    client = app_factory(SESSION_COOKIE_SECURE=True).test_client()
    session = [c for c in client.get("/sell").headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert session and all("; Secure" in c for c in session), session
