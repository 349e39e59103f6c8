"""Orders over HTTP on both backends: placing (snapshots, stock, validation, Idempotency-Key),
listing, reading and cancelling. Every "nothing changes" claim is checked in the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from storefront.idempotency import IdempotencyRecord, StoredResponse, _Reservation
from storefront.kit.db import utcnow
from storefront.kit.errors import Conflict
from storefront.resources import Resources
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.orders import (
    assert_problem,
    assert_validation_error,
    cancel_url,
    count_order_lines,
    count_orders,
    idem,
    idempotency_states,
    order_fingerprint,
    order_scope,
    order_status_in_db,
    order_url,
    orders_url,
    product_state,
    product_url,
    set_order_status,
    stock_of,
)


@dataclass
class World:
    owner: UserHandle
    staff: UserHandle
    shop: dict[str, Any]
    customer: UserHandle


@pytest.fixture
async def world(api: Api) -> World:
    owner, staff, shop = await shop_with_staff(api)
    return World(owner, staff, shop, await api.user())


async def post_order(
    api: Api, user: UserHandle | None, shop: dict[str, Any], body: dict[str, Any], key: str | None
) -> Any:
    headers = dict(user.auth) if user is not None else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post(orders_url(shop), json=body, headers=headers)


# --------------------------------------------------------------------------- placing


async def test_create_order_returns_201_with_snapshot_lines_and_location(
    api: Api, world: World, resources: Resources
) -> None:
    first = await api.product(world.staff, world.shop, price_cents=250, stock=5, currency="EUR")
    second = await api.product(world.staff, world.shop, price_cents=1999, stock=7, currency="EUR")
    # request order differs from id order: lines must keep the order the client sent
    body = api.order_body((second, 3), (first, 2), line2="Flat 4")

    r = await post_order(api, world.customer, world.shop, body, str(uuid.uuid4()))

    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "idempotent-replayed" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    order = r.json()
    assert r.headers["location"] == order_url(world.shop, order["id"])
    uuid.UUID(order["id"])
    assert order["shop_id"] == world.shop["id"]
    assert order["customer_id"] == world.customer.id
    assert order["status"] == "pending"
    assert order["currency"] == "EUR"
    assert order["total_cents"] == 3 * 1999 + 2 * 250 == 6497
    assert order["lines"] == [
        {
            "product_id": second["id"],
            "sku": second["sku"],
            "name": second["name"],
            "unit_price_cents": 1999,
            "quantity": 3,
            "line_total_cents": 5997,
        },
        {
            "product_id": first["id"],
            "sku": first["sku"],
            "name": first["name"],
            "unit_price_cents": 250,
            "quantity": 2,
            "line_total_cents": 500,
        },
    ]
    assert order["shipping_address"] == body["shipping_address"]
    assert order["shipping_address"]["line2"] == "Flat 4"
    assert order["created_at"]
    assert order["updated_at"]

    assert await stock_of(resources, first) == 3
    assert await stock_of(resources, second) == 4
    assert await count_orders(resources) == 1
    assert await count_order_lines(resources) == 2

    # the Location resolves to the same representation
    fetched = await api.client.get(r.headers["location"], headers=world.customer.auth)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == order


async def test_order_keeps_price_name_and_sku_as_at_order_time(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, price_cents=1000, stock=10)
    order = await api.order(world.customer, world.shop, (product, 2))
    assert order["total_cents"] == 2000

    r = await api.client.patch(
        product_url(world.shop, product["id"]),
        json={"price_cents": 5000, "name": "Renamed later"},
        headers=world.staff.auth,
    )
    assert r.status_code == 200, r.text
    assert (await product_state(resources, product)).price_cents == 5000
    r = await api.client.delete(product_url(world.shop, product["id"]), headers=world.staff.auth)
    assert r.status_code == 204, r.text

    for user in (world.customer, world.staff):
        r = await api.client.get(order_url(world.shop, order["id"]), headers=user.auth)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["total_cents"] == 2000
        assert got["lines"][0]["unit_price_cents"] == 1000
        assert got["lines"][0]["line_total_cents"] == 2000
        assert got["lines"][0]["name"] == product["name"]
        assert got["lines"][0]["sku"] == product["sku"]
        assert got == order


async def test_new_order_uses_the_new_price(api: Api, world: World) -> None:
    product = await api.product(world.staff, world.shop, price_cents=1000, stock=10)
    before = await api.order(world.customer, world.shop, (product, 1))
    r = await api.client.patch(
        product_url(world.shop, product["id"]), json={"price_cents": 1234}, headers=world.staff.auth
    )
    assert r.status_code == 200, r.text
    after = await api.order(world.customer, world.shop, (product, 2))
    assert before["total_cents"] == 1000
    assert after["lines"][0]["unit_price_cents"] == 1234
    assert after["total_cents"] == 2468


async def test_ordering_the_whole_stock_leaves_zero(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=3)
    await api.order(world.customer, world.shop, (product, 3))
    assert await stock_of(resources, product) == 0
    r = await api.place_order(world.customer, world.shop, (product, 1))
    assert_problem(r, 409, "insufficient-stock")
    assert await stock_of(resources, product) == 0
    assert await count_orders(resources) == 1


async def test_not_enough_stock_is_409_and_changes_nothing(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=2)
    before = await product_state(resources, product)

    r = await api.place_order(world.customer, world.shop, (product, 3))

    problem = assert_problem(r, 409, "insufficient-stock")
    assert problem["product_id"] == product["id"]
    assert await product_state(resources, product) == before
    assert await count_orders(resources) == 0
    assert await count_order_lines(resources) == 0
    assert await idempotency_states(resources) == []  # the failed attempt released its key


@pytest.mark.parametrize("failing_line_first_in_body", [False, True])
async def test_two_line_order_whose_second_line_fails_changes_nothing(
    api: Api, world: World, resources: Resources, failing_line_first_in_body: bool
) -> None:
    plenty = await api.product(world.staff, world.shop, stock=10)
    scarce = await api.product(world.staff, world.shop, stock=1)
    # stock is taken in product-id order: `plenty` (older UUIDv7) is decremented first,
    # then `scarce` fails, so the first decrement must be rolled back
    assert uuid.UUID(plenty["id"]) < uuid.UUID(scarce["id"])
    before = {p["id"]: await product_state(resources, p) for p in (plenty, scarce)}
    lines = [(plenty, 4), (scarce, 2)]
    if failing_line_first_in_body:
        lines.reverse()

    r = await api.place_order(world.customer, world.shop, *lines)

    problem = assert_problem(r, 409, "insufficient-stock")
    assert problem["product_id"] == scarce["id"]
    for p in (plenty, scarce):
        assert await product_state(resources, p) == before[p["id"]]
    assert await count_orders(resources) == 0
    assert await count_order_lines(resources) == 0


async def test_unknown_product_is_422_and_changes_nothing(
    api: Api, world: World, resources: Resources
) -> None:
    real = await api.product(world.staff, world.shop, stock=5)
    ghost = {"id": str(uuid.uuid4())}

    r = await api.place_order(world.customer, world.shop, (real, 1), (ghost, 1))

    problem = assert_problem(r, 422, "unknown-product")
    assert problem["product_id"] == ghost["id"]
    assert await stock_of(resources, real) == 5
    assert await count_orders(resources) == 0


async def test_archived_product_is_422_and_changes_nothing(
    api: Api, world: World, resources: Resources
) -> None:
    kept = await api.product(world.staff, world.shop, stock=5)
    archived = await api.product(world.staff, world.shop, stock=5)
    r = await api.client.delete(product_url(world.shop, archived["id"]), headers=world.staff.auth)
    assert r.status_code == 204, r.text

    r = await api.place_order(world.customer, world.shop, (kept, 1), (archived, 1))

    problem = assert_problem(r, 422, "unknown-product")
    assert problem["product_id"] == archived["id"]
    assert await stock_of(resources, kept) == 5
    assert await stock_of(resources, archived) == 5
    assert await count_orders(resources) == 0


async def test_products_in_different_currencies_are_422_and_change_nothing(
    api: Api, world: World, resources: Resources
) -> None:
    euro = await api.product(world.staff, world.shop, currency="EUR", stock=5)
    dollar = await api.product(world.staff, world.shop, currency="USD", stock=5)

    r = await api.place_order(world.customer, world.shop, (euro, 1), (dollar, 1))

    assert_problem(r, 422, "mixed-currencies")
    assert await stock_of(resources, euro) == 5
    assert await stock_of(resources, dollar) == 5
    assert await count_orders(resources) == 0
    # each on its own is fine, and carries its own currency
    usd = await api.order(world.customer, world.shop, (dollar, 1))
    assert usd["currency"] == "USD"


async def test_duplicate_product_lines_are_422(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)

    r = await api.place_order(world.customer, world.shop, (product, 1), (product, 2))

    assert_validation_error(r, "lines")
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0


@pytest.mark.parametrize("quantity", [0, -1, 1001, 1.5, None, "two"])
async def test_bad_quantity_is_422(
    api: Api, world: World, resources: Resources, quantity: object
) -> None:
    product = await api.product(world.staff, world.shop, stock=5000)
    body = api.order_body((product, 1))
    body["lines"][0]["quantity"] = quantity

    r = await post_order(api, world.customer, world.shop, body, str(uuid.uuid4()))

    assert_validation_error(r, "quantity")
    assert await stock_of(resources, product) == 5000
    assert await count_orders(resources) == 0


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(lines=[]), id="no-lines"),
        pytest.param(lambda b: b.pop("lines"), id="lines-missing"),
        pytest.param(lambda b: b.pop("shipping_address"), id="address-missing"),
        pytest.param(lambda b: b["shipping_address"].update(country="gb"), id="bad-country"),
        pytest.param(lambda b: b["lines"][0].update(product_id="nope"), id="bad-product-id"),
    ],
)
async def test_malformed_body_is_422(
    api: Api, world: World, resources: Resources, mutate: Any
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    body = api.order_body((product, 1))
    mutate(body)

    r = await post_order(api, world.customer, world.shop, body, str(uuid.uuid4()))

    assert_validation_error(r)
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("order", "total_cents", 1),
        ("order", "status", "paid"),
        ("order", "customer_id", "00000000-0000-0000-0000-000000000001"),
        ("order", "currency", "EUR"),
        ("order", "id", "00000000-0000-0000-0000-000000000002"),
        ("order", "shop_id", "00000000-0000-0000-0000-000000000003"),
        ("line", "unit_price_cents", 1),
        ("line", "line_total_cents", 1),
        ("line", "sku", "FREE"),
        ("address", "is_admin", True),
    ],
)
async def test_unknown_fields_are_refused(
    api: Api, world: World, resources: Resources, where: str, field: str, value: object
) -> None:
    """Mass assignment: the client cannot set prices, totals, status or ownership."""
    product = await api.product(world.staff, world.shop, stock=5, price_cents=999)
    body = api.order_body((product, 1))
    target = {
        "order": body,
        "line": body["lines"][0],
        "address": body["shipping_address"],
    }[where]
    target[field] = value

    r = await post_order(api, world.customer, world.shop, body, str(uuid.uuid4()))

    errors = assert_validation_error(r, field)
    assert any(e["type"] == "extra_forbidden" for e in errors), errors
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0


async def test_anonymous_cannot_order(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    body = api.order_body((product, 1))

    r = await post_order(api, None, world.shop, body, str(uuid.uuid4()))
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")

    r = await api.client.post(
        orders_url(world.shop),
        json=body,
        headers={"Authorization": "Bearer not-a-token", **idem()},
    )
    assert_problem(r, 401, "unauthenticated")

    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0
    assert await idempotency_states(resources) == []


async def test_order_in_unknown_shop_is_404(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    r = await post_order(
        api,
        world.customer,
        {"id": str(uuid.uuid4())},
        api.order_body((product, 1)),
        str(uuid.uuid4()),
    )
    assert_problem(r, 404)
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0


# --------------------------------------------------------------------------- Idempotency-Key


@pytest.mark.parametrize("key", [None, "", "   "])
async def test_missing_idempotency_key_is_400(
    api: Api, world: World, resources: Resources, key: str | None
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)

    r = await post_order(api, world.customer, world.shop, api.order_body((product, 1)), key)

    assert_problem(r, 400, "idempotency-key-missing")
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0


async def test_overlong_idempotency_key_is_refused(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    r = await post_order(api, world.customer, world.shop, api.order_body((product, 1)), "k" * 256)
    assert_problem(r, 422)
    assert await count_orders(resources) == 0
    # the longest allowed key works
    r = await post_order(api, world.customer, world.shop, api.order_body((product, 1)), "k" * 255)
    assert r.status_code == 201, r.text


async def test_same_key_same_body_replays_the_response(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5, price_cents=700)
    body = api.order_body((product, 2))
    key = str(uuid.uuid4())

    first = await post_order(api, world.customer, world.shop, body, key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    # the same logical body, serialised differently, is the same request
    reordered = {"shipping_address": dict(reversed(body["shipping_address"].items()))}
    reordered["lines"] = body["lines"]
    for again in (body, reordered, body):
        r = await post_order(api, world.customer, world.shop, again, key)
        assert r.status_code == 201, r.text
        assert r.headers["idempotent-replayed"] == "true"
        assert r.content == first.content
        assert r.headers["location"] == first.headers["location"]
        assert r.headers["content-type"] == first.headers["content-type"]

    assert await count_orders(resources) == 1
    assert await stock_of(resources, product) == 3
    assert await idempotency_states(resources) == ["completed"]

    r = await api.client.get(orders_url(world.shop), headers=world.customer.auth)
    assert [o["id"] for o in r.json()["items"]] == [first.json()["id"]]


async def test_same_key_different_body_is_422(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    other = await api.product(world.staff, world.shop, stock=5)
    key = str(uuid.uuid4())
    first = await api.place_order(world.customer, world.shop, (product, 1), key=key)
    assert first.status_code == 201, first.text

    for lines in ([(product, 2)], [(other, 1)], [(product, 1), (other, 1)]):
        r = await api.place_order(world.customer, world.shop, *lines, key=key)
        assert_problem(r, 422, "idempotency-key-reused")

    different_address = api.order_body((product, 1), city="Paris")
    r = await post_order(api, world.customer, world.shop, different_address, key)
    assert_problem(r, 422, "idempotency-key-reused")

    assert await count_orders(resources) == 1
    assert await stock_of(resources, product) == 4
    assert await stock_of(resources, other) == 5
    # and the original is still replayable
    r = await api.place_order(world.customer, world.shop, (product, 1), key=key)
    assert r.status_code == 201
    assert r.content == first.content


async def test_same_key_while_first_is_in_flight_is_409(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    body = api.order_body((product, 1))
    key = str(uuid.uuid4())
    scope = order_scope(world.shop)
    async with resources.sessionmaker() as session:
        reservation = await resources.idempotency._reserve(
            session,
            owner=str(world.customer.id),
            scope=scope,
            key=key,
            fp=order_fingerprint(world.shop, body),
        )
    assert isinstance(reservation, _Reservation)

    r = await post_order(api, world.customer, world.shop, body, key)

    assert_problem(r, 409, "idempotency-in-flight")
    assert r.headers["retry-after"] == "1"
    assert await stock_of(resources, product) == 5
    assert await count_orders(resources) == 0
    assert await idempotency_states(resources) == ["in_flight"]  # the holder's, untouched

    # a different body under the in-flight key is still a misuse of the key
    r = await api.place_order(world.customer, world.shop, (product, 2), key=key)
    assert_problem(r, 422, "idempotency-key-reused")

    # a different key is not blocked
    other = await api.place_order(world.customer, world.shop, (product, 1))
    assert other.status_code == 201, other.text


async def test_abandoned_reservation_is_taken_over_after_the_lock_timeout(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    body = api.order_body((product, 1))
    key = str(uuid.uuid4())
    async with resources.sessionmaker() as session:
        stale = await resources.idempotency._reserve(
            session,
            owner=str(world.customer.id),
            scope=order_scope(world.shop),
            key=key,
            fp=order_fingerprint(world.shop, body),
        )
        # its holder died long ago
        past = utcnow() - resources.idempotency.lock_timeout - timedelta(seconds=5)
        await session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == key).values(locked_at=past)
        )
        await session.commit()

    r = await post_order(api, world.customer, world.shop, body, key)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert await stock_of(resources, product) == 4
    assert await idempotency_states(resources) == ["completed"]

    # the original holder can no longer complete: its lock token was replaced
    assert isinstance(stale, _Reservation)
    async with resources.sessionmaker() as session:
        with pytest.raises(Conflict):
            await resources.idempotency._complete(session, stale, StoredResponse(201, b"{}"))
        await session.rollback()
    replay = await post_order(api, world.customer, world.shop, body, key)
    assert replay.content == r.content


async def test_same_key_through_another_spelling_of_the_shop_id_is_a_replay(
    api: Api, world: World, resources: Resources
) -> None:
    """/shops/<UPPER-CASE id> and /shops/<hex id> are the same resource as /shops/<id>."""
    product = await api.product(world.staff, world.shop, stock=10)
    body = api.order_body((product, 1))
    key = str(uuid.uuid4())
    first = await post_order(api, world.customer, world.shop, body, key)
    assert first.status_code == 201, first.text

    for spelling in (world.shop["id"].upper(), uuid.UUID(world.shop["id"]).hex):
        r = await post_order(api, world.customer, {"id": spelling}, body, key)
        assert r.status_code == 201, r.text
        assert r.headers["idempotent-replayed"] == "true"
        assert r.content == first.content

    assert await count_orders(resources) == 1
    assert await stock_of(resources, product) == 9


async def test_keys_are_per_user(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    other_customer = await api.user()
    key = str(uuid.uuid4())

    a = await api.place_order(world.customer, world.shop, (product, 1), key=key)
    b = await api.place_order(other_customer, world.shop, (product, 1), key=key)

    assert a.status_code == 201, a.text
    assert b.status_code == 201, b.text
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["customer_id"] == world.customer.id
    assert b.json()["customer_id"] == other_customer.id
    assert await count_orders(resources) == 2
    assert await stock_of(resources, product) == 3


async def test_keys_are_per_shop(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    _o, other_staff, other_shop = await shop_with_staff(api)
    other_product = await api.product(other_staff, other_shop, stock=5)
    key = str(uuid.uuid4())

    a = await api.place_order(world.customer, world.shop, (product, 1), key=key)
    b = await api.place_order(world.customer, other_shop, (other_product, 1), key=key)

    assert a.status_code == 201, a.text
    assert b.status_code == 201, b.text
    assert b.json()["shop_id"] == other_shop["id"]
    assert await stock_of(resources, product) == 4
    assert await stock_of(resources, other_product) == 4


async def test_failed_attempt_can_be_retried_with_the_same_key(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=2)
    key = str(uuid.uuid4())

    r = await api.place_order(world.customer, world.shop, (product, 5), key=key)
    assert_problem(r, 409, "insufficient-stock")
    # retried too early: still failing, still nothing stored against the key
    r = await api.place_order(world.customer, world.shop, (product, 5), key=key)
    assert_problem(r, 409, "insufficient-stock")
    assert await idempotency_states(resources) == []

    r = await api.client.patch(
        product_url(world.shop, product["id"]), json={"stock": 10}, headers=world.staff.auth
    )
    assert r.status_code == 200, r.text

    ok = await api.place_order(world.customer, world.shop, (product, 5), key=key)
    assert ok.status_code == 201, ok.text
    assert "idempotent-replayed" not in ok.headers
    assert await stock_of(resources, product) == 5

    replay = await api.place_order(world.customer, world.shop, (product, 5), key=key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == ok.content
    assert await count_orders(resources) == 1
    assert await stock_of(resources, product) == 5


# --------------------------------------------------------------------------- listing


async def test_staff_list_every_order_customers_only_their_own(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=100)
    alice, bob, nobody = world.customer, await api.user(), await api.user()
    alice_ids = [(await api.order(alice, world.shop, (product, 1)))["id"] for _ in range(2)]
    bob_ids = [(await api.order(bob, world.shop, (product, 1)))["id"]]
    everything = sorted(alice_ids + bob_ids, key=uuid.UUID)

    expectations = [
        (world.owner, everything),
        (world.staff, everything),
        (alice, sorted(alice_ids, key=uuid.UUID)),
        (bob, bob_ids),
        (nobody, []),
    ]
    for user, expected in expectations:
        r = await api.client.get(orders_url(world.shop), headers=user.auth)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        page = r.json()
        assert [o["id"] for o in page["items"]] == expected, user.email
        assert page["next_cursor"] is None
        assert "link" not in r.headers
        for o in page["items"]:
            assert o["shop_id"] == world.shop["id"]
            assert len(o["lines"]) == 1


async def test_list_filters_by_status(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=100)
    other = await api.user()
    pending = await api.order(world.customer, world.shop, (product, 1))
    cancelled = await api.order(world.customer, world.shop, (product, 1))
    paid = await api.order(world.customer, world.shop, (product, 1))
    others_pending = await api.order(other, world.shop, (product, 1))
    r = await api.client.post(cancel_url(world.shop, cancelled["id"]), headers=world.customer.auth)
    assert r.status_code == 200, r.text
    await set_order_status(resources, paid["id"], "paid")

    async def ids(user: UserHandle, status: str) -> list[str]:
        r = await api.client.get(
            orders_url(world.shop), params={"status": status}, headers=user.auth
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert all(o["status"] == status for o in items), items
        return [o["id"] for o in items]

    assert await ids(world.staff, "pending") == sorted(
        [pending["id"], others_pending["id"]], key=uuid.UUID
    )
    assert await ids(world.staff, "cancelled") == [cancelled["id"]]
    assert await ids(world.staff, "paid") == [paid["id"]]
    assert await ids(world.staff, "fulfilled") == []
    assert await ids(world.customer, "pending") == [pending["id"]]
    assert await ids(world.customer, "paid") == [paid["id"]]
    assert await ids(other, "pending") == [others_pending["id"]]
    assert await ids(other, "cancelled") == []

    r = await api.client.get(
        orders_url(world.shop), params={"status": "shipped"}, headers=world.staff.auth
    )
    assert_validation_error(r, "status")


async def test_list_keyset_pagination_with_cursor_and_link(api: Api, world: World) -> None:
    product = await api.product(world.staff, world.shop, stock=100)
    other = await api.user()
    created = [(await api.order(world.customer, world.shop, (product, 1)))["id"] for _ in range(5)]
    await api.order(other, world.shop, (product, 1))  # never in the customer's pages

    seen: list[str] = []
    pages = 0
    r = await api.client.get(
        orders_url(world.shop), params={"limit": 2}, headers=world.customer.auth
    )
    while True:
        assert r.status_code == 200, r.text
        pages += 1
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [o["id"] for o in page["items"]]
        if page["next_cursor"] is None:
            assert "link" not in r.headers
            break
        link = r.headers["link"]
        assert link.endswith('>; rel="next"'), link
        url = link[1 : link.index(">")]
        assert "limit=2" in url
        assert f"cursor={page['next_cursor']}" in url
        assert pages < 10
        r = await api.client.get(url, headers=world.customer.auth)

    assert pages == 3
    assert seen == sorted(created, key=uuid.UUID)

    # the same cursor via the query parameter gives the same second page
    first = await api.client.get(
        orders_url(world.shop), params={"limit": 2}, headers=world.customer.auth
    )
    cursor = first.json()["next_cursor"]
    second = await api.client.get(
        orders_url(world.shop), params={"limit": 2, "cursor": cursor}, headers=world.customer.auth
    )
    assert [o["id"] for o in second.json()["items"]] == seen[2:4]

    # exactly `limit` results: no next page
    r = await api.client.get(
        orders_url(world.shop), params={"limit": 5}, headers=world.customer.auth
    )
    assert [o["id"] for o in r.json()["items"]] == seen
    assert r.json()["next_cursor"] is None
    # staff paginate over everyone's orders
    r = await api.client.get(orders_url(world.shop), params={"limit": 5}, headers=world.staff.auth)
    assert len(r.json()["items"]) == 5
    assert r.json()["next_cursor"] is not None


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"limit": 101}, "validation-error"),
        ({"limit": 0}, "validation-error"),
        ({"limit": -1}, "validation-error"),
        ({"limit": "ten"}, "validation-error"),
        ({"cursor": "not-a-cursor!"}, "invalid-cursor"),
    ],
)
async def test_list_rejects_bad_paging(
    api: Api, world: World, params: dict[str, Any], slug: str
) -> None:
    r = await api.client.get(orders_url(world.shop), params=params, headers=world.staff.auth)
    assert_problem(r, 422, slug)


async def test_list_limit_100_is_allowed(api: Api, world: World) -> None:
    r = await api.client.get(
        orders_url(world.shop), params={"limit": 100}, headers=world.staff.auth
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}


async def test_list_needs_sign_in_and_a_real_shop(api: Api, world: World) -> None:
    r = await api.client.get(orders_url(world.shop))
    assert_problem(r, 401, "unauthenticated")
    r = await api.client.get(orders_url(str(uuid.uuid4())), headers=world.customer.auth)
    assert_problem(r, 404)


# --------------------------------------------------------------------------- reading one


async def test_get_order_visibility(api: Api, world: World) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    order = await api.order(world.customer, world.shop, (product, 1))
    url = order_url(world.shop, order["id"])

    for user in (world.customer, world.staff, world.owner):
        r = await api.client.get(url, headers=user.auth)
        assert r.status_code == 200, r.text
        assert r.json() == order
        assert r.headers["cache-control"] == "no-store"

    stranger = await api.user()
    r = await api.client.get(url, headers=stranger.auth)
    problem = assert_problem(r, 404, "not-found")
    assert order["id"] not in r.text.replace(r.request.url.path, "")
    assert "customer_id" not in problem

    assert_problem(await api.client.get(url), 401, "unauthenticated")
    r = await api.client.get(order_url(world.shop, str(uuid.uuid4())), headers=world.staff.auth)
    assert_problem(r, 404, "not-found")
    r = await api.client.get(order_url(world.shop, "not-a-uuid"), headers=world.staff.auth)
    assert_problem(r, 422)


# --------------------------------------------------------------------------- cancelling


async def test_customer_cancels_own_pending_order_and_stock_returns(
    api: Api, world: World, resources: Resources
) -> None:
    a = await api.product(world.staff, world.shop, stock=10, price_cents=100)
    b = await api.product(world.staff, world.shop, stock=4, price_cents=300)
    order = await api.order(world.customer, world.shop, (a, 3), (b, 4))
    assert await stock_of(resources, a) == 7
    assert await stock_of(resources, b) == 0

    r = await api.client.post(cancel_url(world.shop, order["id"]), headers=world.customer.auth)

    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    cancelled = r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["id"] == order["id"]
    assert cancelled["lines"] == order["lines"]
    assert cancelled["total_cents"] == order["total_cents"] == 1500
    assert cancelled["updated_at"] >= order["updated_at"]
    assert await stock_of(resources, a) == 10
    assert await stock_of(resources, b) == 4
    assert await order_status_in_db(resources, order["id"]) == "cancelled"

    r = await api.client.get(order_url(world.shop, order["id"]), headers=world.customer.auth)
    assert r.json()["status"] == "cancelled"

    # cancelling again is refused and returns nothing twice
    for user in (world.customer, world.staff):
        r = await api.client.post(cancel_url(world.shop, order["id"]), headers=user.auth)
        problem = assert_problem(r, 409, "invalid-transition")
        assert problem["current_status"] == "cancelled"
    assert await stock_of(resources, a) == 10
    assert await stock_of(resources, b) == 4


async def test_staff_cancel_pending_order(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    order = await api.order(world.customer, world.shop, (product, 2))
    r = await api.client.post(cancel_url(world.shop, order["id"]), headers=world.staff.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["customer_id"] == world.customer.id
    assert await stock_of(resources, product) == 5


async def test_another_customer_cannot_cancel(api: Api, world: World, resources: Resources) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    order = await api.order(world.customer, world.shop, (product, 2))
    stranger = await api.user()

    r = await api.client.post(cancel_url(world.shop, order["id"]), headers=stranger.auth)

    assert_problem(r, 404, "not-found")
    assert await order_status_in_db(resources, order["id"]) == "pending"
    assert await stock_of(resources, product) == 3
    r = await api.client.post(cancel_url(world.shop, order["id"]))
    assert_problem(r, 401, "unauthenticated")
    assert await order_status_in_db(resources, order["id"]) == "pending"
    r = await api.client.post(cancel_url(world.shop, str(uuid.uuid4())), headers=world.staff.auth)
    assert_problem(r, 404, "not-found")


async def test_paid_order_only_staff_can_cancel(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    order = await api.order(world.customer, world.shop, (product, 2))
    await set_order_status(resources, order["id"], "paid")

    r = await api.client.post(cancel_url(world.shop, order["id"]), headers=world.customer.auth)
    problem = assert_problem(r, 409, "invalid-transition")
    assert problem["current_status"] == "paid"
    assert await order_status_in_db(resources, order["id"]) == "paid"
    assert await stock_of(resources, product) == 3

    r = await api.client.post(cancel_url(world.shop, order["id"]), headers=world.staff.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert await order_status_in_db(resources, order["id"]) == "cancelled"
    assert await stock_of(resources, product) == 5


async def test_fulfilled_order_cannot_be_cancelled(
    api: Api, world: World, resources: Resources
) -> None:
    product = await api.product(world.staff, world.shop, stock=5)
    order = await api.order(world.customer, world.shop, (product, 2))
    await set_order_status(resources, order["id"], "fulfilled")

    for user in (world.staff, world.owner, world.customer):
        r = await api.client.post(cancel_url(world.shop, order["id"]), headers=user.auth)
        problem = assert_problem(r, 409, "invalid-transition")
        assert problem["current_status"] == "fulfilled"
    assert await order_status_in_db(resources, order["id"]) == "fulfilled"
    assert await stock_of(resources, product) == 3
