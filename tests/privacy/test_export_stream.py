"""A large export over a real HTTP server (uvicorn on a free loopback port), on both backends:
the first bytes arrive long before the query is done, a slow reader slows the cursor down
(flow control, so memory stays flat), a client that goes away stops the query, and neither a
finished nor an abandoned export leaves a pooled connection checked out."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Table, event, insert, text

from storefront.kit.db import new_id, utcnow
from storefront.orders import export
from storefront.orders.models import Order, OrderLine, OrderStatus
from storefront.orders.sealing import seal_address
from storefront.resources import Resources
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.orders import orders_url
from tests.support.servers import free_port

ORDERS = 30_000  # ~45 MB of NDJSON: far more than loopback socket buffers hold
LINES_PER_ORDER = 3
NDJSON = "application/x-ndjson"


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[str]:
    """Serve the (already started) app over real HTTP; the lifespan is the fixture's."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    assert srv.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)


async def _bulk_orders(resources: Resources, shop_id: str, customer_id: str) -> None:
    now = utcnow()
    orders, lines = [], []
    ids = [new_id() for _ in range(ORDERS)]
    async with resources.sessionmaker() as session, session.begin():
        # addresses are sealed with the customer's data key (one unwrap, cached on the session)
        sealed = [
            await seal_address(
                session,
                order_id,
                uuid.UUID(customer_id),
                {
                    "name": f"Customer {i}",
                    "line1": "1 Long Road",
                    "city": "Bern",
                    "postal_code": "3000",
                    "country": "CH",
                },
                vault=resources.vault,
            )
            for i, order_id in enumerate(ids)
        ]
    for i, (order_id, address) in enumerate(zip(ids, sealed, strict=True)):
        orders.append(
            {
                "id": order_id,
                "shop_id": uuid.UUID(shop_id),
                "customer_id": uuid.UUID(customer_id),
                "status": OrderStatus.pending,
                "currency": "EUR",
                "total_cents": 3 * 1234,
                "shipping_address_sealed": address,
                "version": 1,
                "created_at": now + timedelta(microseconds=i),
                "updated_at": now + timedelta(microseconds=i),
            }
        )
        for position in range(LINES_PER_ORDER):
            lines.append(
                {
                    "id": new_id(),
                    "order_id": order_id,
                    "shop_id": uuid.UUID(shop_id),
                    "position": position,
                    "product_id": uuid.uuid4(),
                    "sku": f"SKU-{position}",
                    "name": f"A product with a reasonably long name, number {position}",
                    "unit_price_cents": 1234,
                    "quantity": 1,
                    "line_total_cents": 1234,
                }
            )
    orders_table = cast(Table, Order.__table__)  # typed FromClause; insert() wants a Table
    lines_table = cast(Table, OrderLine.__table__)
    async with resources.engine.begin() as conn:
        for start in range(0, len(orders), 5000):
            await conn.execute(insert(orders_table), orders[start : start + 5000])
        for start in range(0, len(lines), 5000):
            await conn.execute(insert(lines_table), lines[start : start + 5000])


class Batches:
    """Counts the line reads of the export (one per batch) as the server runs them."""

    def __init__(self, resources: Resources) -> None:
        self.engine = resources.engine.sync_engine
        self.count = 0

    def __enter__(self) -> Batches:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)

    def _on(self, _c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "FROM order_lines" in statement:
            self.count += 1


async def _active_postgres_sessions(resources: Resources) -> list[str]:
    """Other sessions of this database still running a query or inside a transaction."""
    async with resources.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
        )
        return [str(r[0]) for r in rows]


@pytest.fixture
async def big_shop(api: Api, resources: Resources) -> tuple[UserHandle, dict[str, Any]]:
    _, staff, shop = await shop_with_staff(api)
    await _bulk_orders(resources, shop["id"], staff.id)
    return staff, shop


async def _wait_until_released(resources: Resources, checked_out: int) -> None:
    pool = resources.engine.pool
    for _ in range(250):
        if pool.checkedout() == checked_out:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"pool still has {pool.checkedout()} checked out")  # type: ignore[attr-defined]


async def test_disconnect_stops_the_query_and_releases_the_connection(
    server: str, resources: Resources, big_shop: tuple[UserHandle, dict[str, Any]]
) -> None:
    staff, shop = big_shop
    total_batches = -(-ORDERS // export.BATCH_SIZE)
    pool = resources.engine.pool
    idle_out = pool.checkedout()  # type: ignore[attr-defined]
    with Batches(resources) as batches:
        async with (
            httpx2.AsyncClient(base_url=server, timeout=30) as client,
            client.stream("GET", orders_url(shop), headers={**staff.auth, "Accept": NDJSON}) as r,
        ):
            assert r.status_code == 200
            assert r.headers["content-type"].startswith(NDJSON)
            lines = r.aiter_lines()
            first = json.loads(await anext(lines))
            # the first order is here while the query is far from done
            assert first["shop_id"] == shop["id"]
            assert len(first["lines"]) == LINES_PER_ORDER
            assert batches.count < total_batches, batches.count
            # a reader that stops reading holds the cursor back (flow control)
            await asyncio.sleep(1.0)
            held_back = batches.count
            assert held_back < total_batches, held_back
            # the client goes away mid-stream (closing the response drops the connection)
        # the server notices, cancels the stream, and the query stops where it was
        await _wait_until_released(resources, idle_out)
        stopped_at = batches.count
        await asyncio.sleep(0.5)
        assert batches.count == stopped_at < total_batches
    if resources.engine.dialect.name == "postgresql":
        assert await _active_postgres_sessions(resources) == []


async def test_full_export_streams_everything_and_releases_the_connection(
    server: str, resources: Resources, big_shop: tuple[UserHandle, dict[str, Any]]
) -> None:
    staff, shop = big_shop
    pool = resources.engine.pool
    idle_out = pool.checkedout()  # type: ignore[attr-defined]
    seen = 0
    last_id = ""
    with Batches(resources) as batches:
        async with (
            httpx2.AsyncClient(base_url=server, timeout=60) as client,
            client.stream("GET", orders_url(shop), headers={**staff.auth, "Accept": NDJSON}) as r,
        ):
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if not line:
                    continue
                order = json.loads(line)
                assert order["id"] > last_id  # keyset order, no duplicates
                last_id = order["id"]
                seen += 1
    assert seen == ORDERS
    assert batches.count == -(-ORDERS // export.BATCH_SIZE)
    await _wait_until_released(resources, idle_out)
    assert pool.checkedout() == idle_out  # type: ignore[attr-defined]
    if resources.engine.dialect.name == "postgresql":
        assert await _active_postgres_sessions(resources) == []
