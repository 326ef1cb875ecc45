"""Buying: one transaction, a car is never sold twice."""
import threading

import pytest


def available_car(sql, offset=0):
    return sql("SELECT id FROM cars WHERE status = 'available' ORDER BY id OFFSET %s LIMIT 1",
               [offset])[0][0]


def buy(client, token, car_id, name, email):
    return client.post(f"/cars/{car_id}/buy", data={
        "csrf_token": token, "buyer_name": name, "buyer_email": email})


@pytest.mark.parametrize("n_buyers", [2, 6])
def test_concurrent_buyers_exactly_one_wins(app, sql, get_csrf, replica_sync, n_buyers):
    replica_sync()
    car_id = available_car(sql, offset=n_buyers)
    price = sql("SELECT price FROM cars WHERE id = %s", [car_id])[0][0]
    clients = [app.test_client() for _ in range(n_buyers)]
    tokens = [get_csrf(c, f"/cars/{car_id}") for c in clients]
    barrier = threading.Barrier(n_buyers)
    results = [None] * n_buyers

    def attempt(i):
        barrier.wait()
        results[i] = buy(clients[i], tokens[i], car_id, f"Buyer {i}", f"buyer{i}@example.com")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n_buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(r.status_code for r in results)
    assert codes == [303] + [409] * (n_buyers - 1), codes
    winner = next(i for i, r in enumerate(results) if r.status_code == 303)
    for i, r in enumerate(results):
        if i != winner:
            assert "this car has just been sold" in r.get_data(as_text=True)
    orders = sql("SELECT buyer_name, buyer_email, price FROM orders WHERE car_id = %s", [car_id])
    assert orders == [(f"Buyer {winner}", f"buyer{winner}@example.com", price)]
    assert sql("SELECT status, buyer_name FROM cars WHERE id = %s", [car_id]) == \
        [("sold", f"Buyer {winner}")]
    # the winner sees the confirmation; the car page (read-your-writes) says sold
    page = clients[winner].get(f"/cars/{car_id}")
    assert "Order #" in page.get_data(as_text=True)
    assert 'data-status="sold"' in page.get_data(as_text=True)


def test_buy_validation_and_sold_car(client, sql, get_csrf):
    car_id = available_car(sql, offset=20)
    token = get_csrf(client, f"/cars/{car_id}")
    resp = buy(client, token, car_id, "", "not-an-email")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "Enter your name." in html and "does not look like an e-mail address" in html
    assert sql("SELECT status FROM cars WHERE id = %s", [car_id]) == [("available",)]

    assert buy(client, token, car_id, "Alan Turing", "alan@example.com").status_code == 303
    # the same buyer submitting twice (double click) is told the car is already theirs
    again = buy(client, token, car_id, "Alan Turing", "alan@example.com")
    assert again.status_code == 303
    assert "already bought this car" in client.get(again.headers["Location"]).get_data(as_text=True)
    # somebody else: a clear message, not an error page
    other = client.application.test_client()
    t2 = get_csrf(other, "/sell")   # the car page no longer shows a buy form
    late = buy(other, t2, car_id, "Late Comer", "late@example.com")
    assert late.status_code == 409
    assert "this car has just been sold" in late.get_data(as_text=True)
    assert sql("SELECT count(*) FROM orders WHERE car_id = %s", [car_id]) == [(1,)]


def test_reserved_car_cannot_be_bought(client, sql, get_csrf, replica_sync):
    car_id = sql("SELECT id FROM cars WHERE status = 'reserved' LIMIT 1")[0][0]
    replica_sync()
    token = get_csrf(client, "/sell")
    resp = buy(client, token, car_id, "Eager Buyer", "eager@example.com")
    assert resp.status_code == 409
    assert "reserved" in resp.get_data(as_text=True)
    assert sql("SELECT count(*) FROM orders WHERE car_id = %s", [car_id]) == [(0,)]


def test_buy_missing_car_is_404(client, get_csrf):
    token = get_csrf(client, "/sell")
    assert buy(client, token, 987654321, "Nobody", "no@example.com").status_code == 404
    assert client.get("/cars/1/buy").status_code == 405
