"""Subscriptions over WebSocket (graphql-transport-ws) across processes: two real server
processes on one database and one Redis; a change made through A reaches a subscriber
connected to B. Authentication on connection_init, authorization per subscription, and
SIGTERM with open subscriptions (the client gets its subscriptions completed and a proper
close, not a reset)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from subprocess import Popen
from typing import Any

import httpx2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.support.factories import AddressInFactory, unique
from tests.support.servers import cli_env, serve, stop, wait_ready

PASSWORD = "a-long-enough-password"
PROTOCOL = Subprotocol("graphql-transport-ws")
DEADLINE = 60.0  # generous: two servers on a loaded two-core machine


@contextmanager
def server(env: dict[str, str]) -> Iterator[tuple[Popen[str], str]]:
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        yield proc, base
    finally:
        stop(proc)


async def user(client: httpx2.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"{unique('live')}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "L"}
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email, {"Authorization": f"Bearer {r.json()['access_token']}"}


async def ws(base: str, auth: dict[str, str] | None) -> ClientConnection:
    """A graphql-transport-ws connection to ``base``, initialised (with ``auth``)."""
    conn = await connect(base.replace("http://", "ws://") + "/graphql", subprotocols=[PROTOCOL])
    payload = {"Authorization": auth["Authorization"]} if auth else {}
    await conn.send(json.dumps({"type": "connection_init", "payload": payload}))
    ack = json.loads(await asyncio.wait_for(conn.recv(), DEADLINE))
    assert ack["type"] == "connection_ack", ack
    return conn


async def subscribe(conn: ClientConnection, query: str, variables: dict[str, Any]) -> str:
    sub_id = uuid.uuid4().hex
    await conn.send(
        json.dumps(
            {"id": sub_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )
    )
    return sub_id


async def next_message(conn: ClientConnection, sub_id: str, within: float) -> dict[str, Any] | None:
    """The next message of subscription ``sub_id`` (pings answered, others' skipped); None if
    none came ``within`` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(await asyncio.wait_for(conn.recv(), left))
        except TimeoutError:
            return None
        if message.get("type") == "ping":
            await conn.send(json.dumps({"type": "pong"}))
            continue
        if message.get("id") == sub_id:
            return dict(message)
    return None


async def rejected(base: str, authorization: str) -> int | None:
    """The close code of a connection initialised with ``authorization``."""
    conn = await connect(base.replace("http://", "ws://") + "/graphql", subprotocols=[PROTOCOL])
    await conn.send(
        json.dumps({"type": "connection_init", "payload": {"Authorization": authorization}})
    )
    try:
        message = await asyncio.wait_for(conn.recv(), DEADLINE)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    raise AssertionError(f"acknowledged: {message!r}")


PRODUCT_CHANGED = """subscription($shop: UUID!) {
  productChanged(shopId: $shop) { id change version product { id stock } } }"""
SHOP_ORDERS = """subscription($shop: UUID!) {
  shopOrders(shopId: $shop) { id status total lines { quantity } } }"""
ORDER_UPDATED = """subscription($shop: UUID!, $order: UUID!) {
  orderUpdated(shopId: $shop, orderId: $order) { id status } }"""


async def test_a_change_through_one_process_reaches_a_subscriber_on_the_other(
    migrated_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = cli_env(
        migrated_database, STOREFRONT_REDIS_URL=redis_url, STOREFRONT_REDIS_PREFIX=redis_prefix
    )
    with server(env) as (_proc_a, base_a), server(env) as (proc_b, base_b):
        async with httpx2.AsyncClient(base_url=base_a, timeout=30) as a:
            _owner_email, owner = await user(a)
            _customer_email, customer = await user(a)
            r = await a.post(
                "/api/v1/shops", json={"name": "Live", "slug": unique("live")}, headers=owner
            )
            assert r.status_code == 201, r.text
            shop = r.json()["id"]
            product_body = {
                "sku": "LIVE-1",
                "name": "Live mug",
                "price_cents": 900,
                "currency": "EUR",
                "stock": 50,
                "category": "kitchen",
            }
            r = await a.post(f"/api/v1/shops/{shop}/products", json=product_body, headers=owner)
            assert r.status_code == 201, r.text
            product = r.json()["id"]

            # authentication on connection_init: a bad token closes the connection
            assert await rejected(base_b, "Bearer x") == 4403

            staff = await ws(base_b, owner)
            shopper = await ws(base_b, customer)
            # authorization per subscription: a customer may not watch the shop's orders
            denied = await subscribe(shopper, SHOP_ORDERS, {"shop": shop})
            message = await next_message(shopper, denied, DEADLINE)
            assert message is not None
            assert message["type"] == "next", message
            assert message["payload"]["data"] is None
            assert message["payload"]["errors"][0]["extensions"]["code"] == "forbidden"

            products_sub = await subscribe(staff, PRODUCT_CHANGED, {"shop": shop})
            orders_sub = await subscribe(staff, SHOP_ORDERS, {"shop": shop})
            # B subscribes asynchronously: change the product through A until an update
            # shows up on B (poll with a deadline)
            deadline = time.monotonic() + DEADLINE
            update = None
            version = 1
            while update is None and time.monotonic() < deadline:
                r = await a.patch(
                    f"/api/v1/shops/{shop}/products/{product}",
                    json={"stock": 50 + version},
                    headers=owner,
                )
                assert r.status_code == 200, r.text
                version += 1
                update = await next_message(staff, products_sub, 2.0)
                if update is not None and (
                    update["payload"]["data"]["productChanged"]["change"] != "updated"
                ):
                    update = None  # the creation's event, relayed late: not ours
            assert update is not None, "no product update reached the other process"
            change = update["payload"]["data"]["productChanged"]
            assert change["id"] == product
            assert change["change"] == "updated"
            assert change["product"]["id"] == product

            # orders placed through A until B's staff subscriber sees one (its subscription
            # starts asynchronously: poll with a deadline), pending with its total
            order_body = {
                "lines": [{"product_id": product, "quantity": 2}],
                "shipping_address": AddressInFactory.build().model_dump(mode="json"),
            }
            seen = None
            deadline = time.monotonic() + DEADLINE
            while seen is None and time.monotonic() < deadline:
                r = await a.post(
                    f"/api/v1/shops/{shop}/orders",
                    json=order_body,
                    headers={**customer, "Idempotency-Key": str(uuid.uuid4())},
                )
                assert r.status_code == 201, r.text
                seen = await next_message(staff, orders_sub, 2.0)
            assert seen is not None, "no order update reached the other process"
            assert seen["type"] == "next", seen
            placed = seen["payload"]["data"]["shopOrders"]
            assert placed["status"] == "PENDING"
            assert placed["total"] == {"cents": 1800, "currency": "EUR"}
            order = placed["id"]

            # the customer follows their own order: its state now, then its cancellation
            # through A, seen on B by the customer and by the staff
            mine = await subscribe(shopper, ORDER_UPDATED, {"shop": shop, "order": order})
            first = await next_message(shopper, mine, DEADLINE)
            assert first is not None
            assert first["payload"]["data"]["orderUpdated"] == {"id": order, "status": "PENDING"}
            cancel = await a.post(f"/api/v1/shops/{shop}/orders/{order}/cancel", headers=customer)
            assert cancel.status_code == 200, cancel.text
            cancelled = await next_message(shopper, mine, DEADLINE)
            assert cancelled is not None, "the cancellation did not reach the other process"
            assert cancelled["payload"]["data"]["orderUpdated"]["status"] == "CANCELLED"
            deadline = time.monotonic() + DEADLINE
            staff_saw = None
            while staff_saw is None and time.monotonic() < deadline:
                message = await next_message(staff, orders_sub, deadline - time.monotonic())
                assert message is not None, "the staff never saw the cancellation"
                update = message["payload"]["data"]["shopOrders"]
                if update["id"] == order and update["status"] == "CANCELLED":
                    staff_saw = update
            # someone else may not follow this order: not found, as reading it
            _other_email, other = await user(a)
            stranger = await ws(base_b, other)
            theirs = await subscribe(stranger, ORDER_UPDATED, {"shop": shop, "order": order})
            refused = await next_message(stranger, theirs, DEADLINE)
            assert refused is not None
            assert refused["payload"]["errors"][0]["extensions"]["code"] == "not-found"
            await stranger.close()

            # SIGTERM on B with subscriptions open: each is completed, then a proper close
            proc_b.send_signal(signal.SIGTERM)
            completed: set[str] = set()
            close_code = None
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(staff.recv(), DEADLINE))
                    if message.get("type") == "complete":
                        completed.add(message["id"])
            except ConnectionClosed as closed:
                close_code = closed.rcvd.code if closed.rcvd is not None else None
            assert {products_sub, orders_sub} <= completed
            assert close_code in (1000, 1001, 1012), close_code
            await shopper.close()


async def test_connections_per_user_are_bounded(migrated_database: str) -> None:
    env = cli_env(migrated_database, STOREFRONT_GRAPHQL__MAX_CONNECTIONS_PER_USER="2")
    with server(env) as (_proc, base):
        async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
            _email, alice = await user(client)
            _email, bob = await user(client)
        first, second = await ws(base, alice), await ws(base, alice)
        # a third connection of the same user is refused; another user is not affected
        assert await rejected(base, alice["Authorization"]) == 4403
        other = await ws(base, bob)
        # a closed connection gives its slot back
        await first.close()
        deadline = time.monotonic() + DEADLINE
        again = None
        while again is None and time.monotonic() < deadline:
            try:
                again = await ws(base, alice)
            except (AssertionError, ConnectionClosed):
                await asyncio.sleep(0.2)  # the server notices the close asynchronously
        assert again is not None, "the closed connection's slot never came back"
        for conn in (second, other, again):
            await conn.close()
