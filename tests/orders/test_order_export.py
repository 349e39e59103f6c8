"""Streaming order exports (NDJSON and CSV) on both backends: the same orders as the JSON
listing, exactly, with correct CSV escaping, the status filter and customer scope honoured,
406 for anything else, and no pooled connection left checked out afterwards."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from storefront.kit.csv_safe import neutralise
from storefront.orders.export import ADDRESS_FIELDS, CSV_HEADER
from storefront.resources import Resources
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.orders import assert_problem, idem, orders_url, set_order_status

NDJSON = "application/x-ndjson"
CSV = "text/csv"
TRICKY = 'Mug "Deluxe", 12oz; naïve ☕ =SUM(A1)'
TRICKY_ADDRESS = {
    "name": 'Zoë "Z" O\'Brien, Jr.',
    "line1": '1 Comma, Quote " Street',
    # address lines are one line each (the one-line rule for names and addresses): a comma
    # and quotes inside one must survive CSV quoting
    "line2": 'Flat 2, Back "door"',
    "city": "São Paulo",
    "postal_code": "01000-000",
    "country": "BR",
    "phone": "+55 11 5555-0000",
}


@dataclass
class World:
    staff: UserHandle
    shop: dict[str, Any]
    alice: UserHandle
    bob: UserHandle
    orders: list[dict[str, Any]]


async def _place(
    api: Api,
    customer: UserHandle,
    shop: dict[str, Any],
    lines: list[tuple[dict[str, Any], int]],
    address: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = api.order_body(*lines)
    if address is not None:
        body["shipping_address"] = address
    r = await api.client.post(orders_url(shop), json=body, headers={**customer.auth, **idem()})
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
async def world(api: Api, resources: Resources) -> World:
    _, staff, shop = await shop_with_staff(api)
    plain = await api.product(staff, shop, stock=1000)
    tricky = await api.product(staff, shop, name=TRICKY, stock=1000)
    alice, bob = await api.user(), await api.user()
    orders = [
        await _place(api, alice, shop, [(tricky, 2), (plain, 1)], TRICKY_ADDRESS),
        await _place(api, bob, shop, [(plain, 3)]),
        await _place(api, alice, shop, [(plain, 1)]),
        await _place(api, bob, shop, [(tricky, 1), (plain, 2)], TRICKY_ADDRESS),
    ]
    await set_order_status(resources, orders[1]["id"], "paid")
    return World(staff, shop, alice, bob, orders)


async def _json_listing(
    api: Api, user: UserHandle, shop: dict[str, Any], **params: Any
) -> list[Any]:
    r = await api.client.get(orders_url(shop), params={"limit": 100, **params}, headers=user.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _export(
    api: Api, user: UserHandle, shop: dict[str, Any], media: str, **params: Any
) -> Any:
    r = await api.client.get(
        orders_url(shop), params=params, headers={**user.auth, "Accept": media}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media), r.headers
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    assert "Accept" in r.headers["vary"]
    return r


def _parse_ndjson(body: bytes) -> list[Any]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.decode().split("\n")[:-1]]


def _csv_rows_of(orders: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What the CSV must say for ``orders``: one row per line, everything as text, text that
    would start a spreadsheet formula prefixed (the phone's "+", tests/kit/test_csv_injection)."""
    rows = []
    for order in orders:
        address = order["shipping_address"] or {}
        for number, line in enumerate(order["lines"], start=1):
            row = {
                "order_id": order["id"],
                "shop_id": order["shop_id"],
                "customer_id": order["customer_id"] or "",
                "status": order["status"],
                "currency": order["currency"],
                "total_cents": str(order["total_cents"]),
                "created_at": order["created_at"],
                "updated_at": order["updated_at"],
                "customer_erased": "true" if order["customer_erased"] else "false",
                "line_number": str(number),
                "product_id": line["product_id"],
                "sku": line["sku"],
                "name": neutralise(line["name"]),
                "unit_price_cents": str(line["unit_price_cents"]),
                "quantity": str(line["quantity"]),
                "line_total_cents": str(line["line_total_cents"]),
            }
            for name in ADDRESS_FIELDS:
                value = address.get(name)
                row[f"shipping_{name}"] = "" if value is None else neutralise(str(value))
            rows.append(row)
    return rows


async def test_ndjson_export_is_exactly_the_orders(api: Api, world: World) -> None:
    expected = await _json_listing(api, world.staff, world.shop)
    assert len(expected) == 4
    r = await _export(api, world.staff, world.shop, NDJSON)
    exported = _parse_ndjson(r.content)
    assert exported == expected  # same orders, same order, same lines, same bytes of text
    tricky = next(o for o in exported if o["shipping_address"]["line2"])
    assert tricky["shipping_address"] == TRICKY_ADDRESS
    assert any(line["name"] == TRICKY for line in tricky["lines"])


async def test_csv_export_is_exactly_the_orders_with_correct_escaping(
    api: Api, world: World
) -> None:
    expected = await _json_listing(api, world.staff, world.shop)
    r = await _export(api, world.staff, world.shop, CSV)
    text = r.content.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    assert tuple(header) == CSV_HEADER
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert rows == _csv_rows_of(expected)
    assert len(rows) == sum(len(o["lines"]) for o in expected) == 6
    # the tricky values really went through quoting: quotes doubled, commas kept inside
    assert '"Mug ""Deluxe"", 12oz; naïve ☕ =SUM(A1)"' in text
    assert '"Flat 2, Back ""door"""' in text
    assert text.endswith("\r\n")


async def test_export_honours_status_filter_and_customer_scope(api: Api, world: World) -> None:
    paid = _parse_ndjson(
        (await _export(api, world.staff, world.shop, NDJSON, status="paid")).content
    )
    assert [o["id"] for o in paid] == [world.orders[1]["id"]]

    own = _parse_ndjson((await _export(api, world.alice, world.shop, NDJSON)).content)
    assert own == await _json_listing(api, world.alice, world.shop)
    assert {o["customer_id"] for o in own} == {world.alice.id}
    assert [o["id"] for o in own] == [world.orders[0]["id"], world.orders[2]["id"]]

    own_csv = (await _export(api, world.bob, world.shop, CSV)).content.decode()
    rows = list(csv.DictReader(io.StringIO(own_csv, newline="")))
    assert {row["customer_id"] for row in rows} == {world.bob.id}
    assert {row["order_id"] for row in rows} == {world.orders[1]["id"], world.orders[3]["id"]}

    stranger = await api.user()
    assert (await _export(api, stranger, world.shop, NDJSON)).content == b""


async def test_export_resumes_after_a_cursor(api: Api, world: World) -> None:
    first = await api.client.get(
        orders_url(world.shop), params={"limit": 1}, headers=world.staff.auth
    )
    cursor = first.json()["next_cursor"]
    rest = _parse_ndjson(
        (await _export(api, world.staff, world.shop, NDJSON, cursor=cursor)).content
    )
    assert [o["id"] for o in rest] == [o["id"] for o in world.orders[1:]]


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/*", "application/json"),
        ("text/csv;q=0.4, application/x-ndjson;q=0.9", NDJSON),
        ("text/html, text/csv;q=0.5", CSV),
    ],
)
async def test_content_negotiation(api: Api, world: World, accept: str | None, media: str) -> None:
    headers = dict(world.staff.auth)
    if accept is not None:
        headers["Accept"] = accept
    r = await api.client.get(orders_url(world.shop), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)
    if media == "application/json":
        assert len(r.json()["items"]) == 4
    assert "Accept" in r.headers["vary"]


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/*", "nonsense"])
async def test_unsupported_accept_is_406_problem(api: Api, world: World, accept: str) -> None:
    r = await api.client.get(orders_url(world.shop), headers={**world.staff.auth, "Accept": accept})
    body = assert_problem(r, 406, "not-acceptable")
    if accept != "nonsense":
        assert body["available"] == ["application/json", NDJSON, CSV]


async def test_export_requires_sign_in(api: Api, world: World) -> None:
    r = await api.client.get(orders_url(world.shop), headers={"Accept": NDJSON})
    assert_problem(r, 401)


async def test_export_reads_lines_in_one_query_per_batch_and_releases_the_pool(
    api: Api, world: World, resources: Resources
) -> None:
    from storefront.orders import export

    statements: list[str] = []

    def on_execute(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    pool = resources.engine.pool
    # more orders than one batch, so the lines are read once per batch (never per order)
    product = await api.product(world.staff, world.shop, stock=1000)
    for _ in range(7):
        await _place(api, world.alice, world.shop, [(product, 1)])
    before_out = pool.checkedout()  # type: ignore[attr-defined]
    event.listen(resources.engine.sync_engine, "before_cursor_execute", on_execute)
    original = export.BATCH_SIZE
    export.BATCH_SIZE = 4
    try:
        r = await _export(api, world.staff, world.shop, NDJSON)
    finally:
        export.BATCH_SIZE = original
        event.remove(resources.engine.sync_engine, "before_cursor_execute", on_execute)
    assert len(_parse_ndjson(r.content)) == 11
    line_reads = [s for s in statements if "FROM order_lines" in s]
    assert len(line_reads) == 3, line_reads  # ceil(11 / 4) batches
    assert pool.checkedout() == before_out  # type: ignore[attr-defined]


async def test_unknown_shop_is_404_problem(api: Api, world: World) -> None:
    r = await api.client.get(
        orders_url(str(uuid.uuid4())), headers={**world.staff.auth, "Accept": NDJSON}
    )
    assert_problem(r, 404)
