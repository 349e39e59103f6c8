"""What the order paths' CPU per request rests on (bench/hot_path_cpu.py): placing an order
sends a bounded number of statements, the holdings check reads plain rows through Core (not
the ORM's loading), and a page of real rows is serialised, by position, into the bytes the
response model would send."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import event
from sqlalchemy.engine.default import NO_CACHE_KEY

from storefront.orders.limits import _PENDING_UNITS
from storefront.orders.repository import OrderRepository
from storefront.orders.schemas import OrderOut
from storefront.orders.sealing import open_addresses
from storefront.orders.serialise import order_out, orders_page_json
from storefront.resources import Resources
from storefront.web.pagination import Page
from tests.conftest import QueryCounter
from tests.support.factories import Api, shop_with_staff
from tests.support.orders import orders_url

# the statements of one placement with three lines on PostgreSQL: the key's reservation;
# the shop; the stock (one UPDATE a line); the holdings lock and read; the customer's data
# key; the order with its lines (one statement); the webhook subscribers; the key's
# completion; the audit chain (lock, head, entry); the domain event; the confirmation job.
# SQLite takes no advisory locks and writes the order and its lines in two statements.
MAX_PLACEMENT_STATEMENTS = {"postgresql": 16, "sqlite": 15}
# the tables a placement writes or reads; statements on others come from the background
# relays (outbox, jobs, consumers) sharing the engine while the request awaits
PLACEMENT_TABLES = (
    "idempotency_keys",
    "shops",
    "products",
    "pg_advisory_xact_lock",
    "order_lines",
    "data_keys",
    "orders",
    "webhook_endpoints",
    "audit_events",
)


def _placement_statements(statements: list[str]) -> list[str]:
    def ours(statement: str) -> bool:
        head = statement.lstrip().upper()
        if head.startswith(("INSERT INTO DOMAIN_EVENTS", "INSERT INTO JOB_OUTBOX")):
            return True  # written by the placement; the relays only read and update them
        if "domain_events" in statement or "job_outbox" in statement or "event_inbox" in statement:
            return False
        return any(table in statement for table in PLACEMENT_TABLES)

    return [s for s in statements if ours(s)]


async def test_placing_an_order_sends_a_bounded_number_of_statements(
    api: Api, resources: Resources, count_queries: Callable[[], QueryCounter]
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=100) for _ in range(3)]
    customer = await api.user()
    await api.order(customer, shop, (products[0], 1))  # the customer's data key exists
    counter = count_queries()
    counter.reset()
    uncached: list[str] = []

    def on_execute(_c: Any, _cur: Any, statement: str, _p: Any, context: Any, _m: bool) -> None:
        # compiled once and then taken from the engine's cache (a multi-row VALUES, or
        # anything else without a cache key, is compiled again on every execution)
        if context is not None and context.cache_hit is NO_CACHE_KEY:
            uncached.append(statement)

    event.listen(resources.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        r = await api.place_order(
            customer, shop, (products[0], 1), (products[1], 2), (products[2], 3)
        )
    finally:
        event.remove(resources.engine.sync_engine, "before_cursor_execute", on_execute)
    assert r.status_code == 201, r.text
    placed = _placement_statements(list(counter.statements))
    assert _placement_statements(uncached) == [], uncached
    dialect = resources.engine.dialect.name
    assert 0 < len(placed) <= MAX_PLACEMENT_STATEMENTS[dialect], "\n".join(placed)
    # the lines go in as one statement, whatever their number; on PostgreSQL with the order
    assert len([s for s in placed if "INSERT INTO order_lines" in s]) == 1
    order_inserts = [s for s in placed if "INSERT INTO orders " in s]
    assert len(order_inserts) == 1
    if dialect == "postgresql":
        assert "INSERT INTO order_lines" in order_inserts[0]


def test_the_holdings_read_is_a_core_statement() -> None:
    """On the tables, not the mapped classes: an ORM-enabled SELECT is compiled and loaded
    by the ORM on every execution."""
    assert [d.get("entity") for d in _PENDING_UNITS.column_descriptions] == [None, None]


async def test_a_page_of_rows_is_served_as_the_response_model_serves_it(
    api: Api, resources: Resources
) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    products = [await api.product(staff, shop, stock=100) for _ in range(3)]
    alice, bob = await api.user(), await api.user()
    for customer, lines in ((alice, 3), (bob, 1), (alice, 2)):
        await api.order(customer, shop, *[(products[i], i + 1) for i in range(lines)])
    async with resources.sessionmaker() as session:
        repo = OrderRepository(session, uuid.UUID(shop["id"]), customer_id=None)
        rows = await repo.list_rows(limit=10, after=None, status=None, vault=resources.vault)
        assert [len(lines) for _, lines in rows] == [3, 1, 2]
        served = await orders_page_json(session, rows, "next", vault=resources.vault)
        addresses = await open_addresses(
            session, [order for order, _ in rows], vault=resources.vault
        )
    items: list[Any] = [
        order_out(order, lines, address)
        for (order, lines), address in zip(rows, addresses, strict=True)
    ]
    assert all(address is not None for address in addresses)
    expected = TypeAdapter(Page[OrderOut]).dump_json(
        Page[OrderOut](items=items, next_cursor="next")
    )
    assert served == expected
    # and what the listing sends
    r = await api.client.get(orders_url(shop), params={"limit": 10}, headers=staff.auth)
    assert r.status_code == 200, r.text
    assert (
        r.json()["items"]
        == TypeAdapter(Page[OrderOut]).dump_python(
            Page[OrderOut](items=items, next_cursor=None), mode="json"
        )["items"]
    )
