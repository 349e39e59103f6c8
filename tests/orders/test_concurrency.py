"""Races on real databases: no overselling, one order per Idempotency-Key, one restock per
cancellation. Requests run truly concurrently (asyncio.gather over the ASGI app, each request
with its own session and connection). These tests must run on PostgreSQL: where it is
unreachable they fail instead of skipping."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx2
import pytest

from storefront.resources import Resources
from tests.support.factories import V1, Api, UserHandle, shop_with_staff
from tests.support.orders import (
    assert_problem,
    cancel_url,
    count_order_lines,
    count_orders,
    idempotency_states,
    order_ids_in_db,
    order_status_in_db,
    stock_of,
)


@pytest.fixture(autouse=True)
def _postgres_is_required(backend: str, postgres_unavailable: str | None) -> None:
    if backend == "postgres" and postgres_unavailable is not None:
        pytest.fail(
            f"the concurrency tests must run on PostgreSQL: {postgres_unavailable}",
            pytrace=False,
        )


def _statuses(responses: list[httpx2.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def _users(api: Api, n: int) -> list[UserHandle]:
    return [await api.user() for _ in range(n)]


async def _one_customer_may_hold_it_all(api: Api, staff: UserHandle, shop: dict[str, Any]) -> None:
    """These tests are about stock under concurrency, with one customer buying all of it:
    the shop lifts the share cap that would otherwise stop that (decision 0118)."""
    r = await api.client.patch(
        f"{V1}/shops/{shop['id']}/order-limits",
        json={"max_pending_stock_percent": 100},
        headers=staff.auth,
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("buyers", ["fifty-customers", "one-customer-fifty-keys"])
async def test_fifty_buyers_for_ten_items_never_oversell(
    api: Api, resources: Resources, buyers: str
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10, price_cents=300)
    if buyers == "fifty-customers":
        customers = await _users(api, 50)
    else:
        await _one_customer_may_hold_it_all(api, staff, shop)
        customers = [await api.user()] * 50

    responses = list(
        await asyncio.gather(*(api.place_order(c, shop, (product, 1)) for c in customers))
    )

    assert _statuses(responses) == {201: 10, 409: 40}, [r.text for r in responses[:3]]
    for r in responses:
        if r.status_code == 409:
            assert_problem(r, 409, "insufficient-stock")
    winners = [r.json() for r in responses if r.status_code == 201]
    ids = {o["id"] for o in winners}
    assert len(ids) == 10
    for order in winners:
        assert order["total_cents"] == 300
        assert order["lines"][0]["quantity"] == 1
    if buyers == "fifty-customers":
        assert len({o["customer_id"] for o in winners}) == 10

    assert await order_ids_in_db(resources) == ids
    assert await count_orders(resources) == 10
    assert await count_order_lines(resources) == 10
    assert await stock_of(resources, product) == 0
    # the 40 failed attempts released their keys; the 10 successes are recorded
    assert sorted(await idempotency_states(resources)) == ["completed"] * 10


async def test_concurrent_mixed_quantities_keep_stock_exact(api: Api, resources: Resources) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=25)
    await _one_customer_may_hold_it_all(api, staff, shop)
    customer = await api.user()
    quantities = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]

    responses = await asyncio.gather(
        *(api.place_order(customer, shop, (product, q)) for q in quantities)
    )

    sold = sum(q for q, r in zip(quantities, responses, strict=True) if r.status_code == 201)
    refused = [q for q, r in zip(quantities, responses, strict=True) if r.status_code == 409]
    assert set(_statuses(list(responses))) <= {201, 409}
    left = await stock_of(resources, product)
    assert left + sold == 25
    assert left >= 0
    # stock only ever shrinks, so every refused request must still be unsatisfiable now
    assert all(left < q for q in refused), (left, refused)
    assert await count_orders(resources) == _statuses(list(responses))[201]


async def test_concurrent_multi_line_orders_in_opposite_order_do_not_deadlock(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    first = await api.product(staff, shop, stock=10)
    second = await api.product(staff, shop, stock=10)
    await _one_customer_may_hold_it_all(api, staff, shop)
    customer = await api.user()
    line_orders = [[(first, 1), (second, 1)], [(second, 1), (first, 1)]] * 15

    responses = list(
        await asyncio.gather(*(api.place_order(customer, shop, *lines) for lines in line_orders))
    )

    assert _statuses(responses) == {201: 10, 409: 20}, [r.text for r in responses[:3]]
    assert await stock_of(resources, first) == 0
    assert await stock_of(resources, second) == 0
    assert await count_orders(resources) == 10
    assert await count_order_lines(resources) == 20


async def test_concurrent_retries_with_one_key_create_one_order(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=10, price_cents=450)
    customer = await api.user()
    key = str(uuid.uuid4())

    responses = list(
        await asyncio.gather(
            *(api.place_order(customer, shop, (product, 2), key=key) for _ in range(20))
        )
    )

    statuses = _statuses(responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1
    body = originals[0].content
    for r in created:
        assert r.content == body
        assert r.headers["location"] == originals[0].headers["location"]
        if r is not originals[0]:
            assert r.headers["idempotent-replayed"] == "true"
    for r in responses:
        if r.status_code == 409:
            assert_problem(r, 409, "idempotency-in-flight")
            assert r.headers["retry-after"] == "1"

    order_id = originals[0].json()["id"]
    assert await order_ids_in_db(resources) == {order_id}
    assert await count_order_lines(resources) == 1
    assert await stock_of(resources, product) == 8
    assert await idempotency_states(resources) == ["completed"]

    replay = await api.place_order(customer, shop, (product, 2), key=key)
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == body
    assert await count_orders(resources) == 1
    assert await stock_of(resources, product) == 8


@pytest.mark.parametrize("who", ["customer", "staff", "both"])
async def test_concurrent_cancels_restock_exactly_once(
    api: Api, resources: Resources, who: str
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    first = await api.product(staff, shop, stock=10)
    second = await api.product(staff, shop, stock=5)
    customer = await api.user()
    order = await api.order(customer, shop, (first, 3), (second, 5))
    assert await stock_of(resources, first) == 7
    assert await stock_of(resources, second) == 0
    cancellers: dict[str, list[UserHandle]] = {
        "customer": [customer] * 10,
        "staff": [staff] * 10,
        "both": [customer, staff] * 5,
    }

    responses = list(
        await asyncio.gather(
            *(
                api.client.post(cancel_url(shop, order["id"]), headers=user.auth)
                for user in cancellers[who]
            )
        )
    )

    assert _statuses(responses) == {200: 1, 409: 9}, [r.text for r in responses[:3]]
    winner: dict[str, Any] = next(r.json() for r in responses if r.status_code == 200)
    assert winner["status"] == "cancelled"
    for r in responses:
        if r.status_code == 409:
            problem = assert_problem(r, 409, "invalid-transition")
            # the refusal reports the state that made it fail, not a stale read
            assert problem["current_status"] == "cancelled", problem
    assert await order_status_in_db(resources, order["id"]) == "cancelled"
    assert await stock_of(resources, first) == 10
    assert await stock_of(resources, second) == 5
