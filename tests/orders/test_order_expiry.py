"""Unpaid orders expire (decision 0118): a pending order past its payment
window becomes `expired`, its stock goes back on sale (cached product pages included), and it
can no longer be cancelled. Time is moved by writing `expires_at` in the database, never by
sleeping; the real job runs against the real database on both backends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from storefront.auditlog import AuditEvent
from storefront.kit.db import utcnow
from storefront.orders.expiry import expire_due
from storefront.orders.models import Order
from storefront.resources import Resources
from storefront.settings import OrdersSettings, Settings
from tests.conftest import make_settings
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.orders import (
    assert_problem,
    cancel_url,
    order_status_in_db,
    order_url,
    orders_url,
    product_url,
    stock_of,
)

# the webhook tests' real loopback receiver and the app that may call it
from tests.webhooks.test_webhooks import Receiver, open_api, open_app, receiver, subscribe  # noqa: F401

HOUR = timedelta(hours=1)


async def _set_order(resources: Resources, order_id: str, **values: Any) -> None:
    async with resources.sessionmaker() as session:
        await session.execute(update(Order).where(Order.id == uuid.UUID(order_id)).values(**values))
        await session.commit()


async def _past_due(resources: Resources, order_id: str) -> None:
    await _set_order(resources, order_id, expires_at=utcnow() - HOUR)


def _orders(resources: Resources) -> OrdersSettings:
    assert resources.settings is not None
    return resources.settings.orders


async def _audit_actions(resources: Resources, order_id: str) -> list[str]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_id == order_id)
            .order_by(AuditEvent.seq)
        )
        return list(rows)


async def _setup(api: Api, stock: int = 10) -> tuple[UserHandle, dict[str, Any], dict[str, Any]]:
    _owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, stock=stock)
    return staff, shop, product


async def test_a_new_order_carries_its_payment_deadline(api: Api, resources: Resources) -> None:
    _staff, shop, product = await _setup(api)
    customer = await api.user()
    before = utcnow()
    order = await api.order(customer, shop, (product, 1))

    assert order["status"] == "pending"
    window = timedelta(minutes=_orders(resources).payment_window_minutes)
    expires = order["expires_at"]
    assert expires is not None
    deadline = datetime.fromisoformat(expires)
    assert before + window <= deadline <= utcnow() + window
    got = await api.client.get(order_url(shop, order["id"]), headers=customer.auth)
    assert got.json()["expires_at"] == expires


async def test_the_job_expires_an_unpaid_order_and_puts_its_stock_back(
    api: Api, resources: Resources
) -> None:
    staff, shop, product = await _setup(api, stock=10)
    customer = await api.user()
    due = await api.order(customer, shop, (product, 3))
    not_due = await api.order(customer, shop, (product, 2))
    assert await stock_of(resources, product) == 5
    # a cached product page, which must not go on showing the held-back stock
    page = await api.client.get(product_url(shop, product["id"]))
    assert page.json()["stock"] == 5
    assert (
        (await api.client.get(product_url(shop, product["id"])))
        .headers["x-cache"]
        .startswith("hit")
    )

    await _past_due(resources, due["id"])
    assert await expire_due(resources, _orders(resources)) == 1

    assert await order_status_in_db(resources, due["id"]) == "expired"
    assert await order_status_in_db(resources, not_due["id"]) == "pending"
    assert await stock_of(resources, product) == 8
    assert (await api.client.get(product_url(shop, product["id"]))).json()["stock"] == 8
    shown = await api.client.get(order_url(shop, due["id"]), headers=customer.auth)
    assert shown.json()["status"] == "expired"
    listed = await api.client.get(
        orders_url(shop), params={"status": "expired"}, headers=staff.auth
    )
    assert [o["id"] for o in listed.json()["items"]] == [due["id"]]
    assert await _audit_actions(resources, due["id"]) == ["order.placed", "order.expired"]

    # expired is terminal: neither the customer nor staff can cancel it, nothing changes
    for user in (customer, staff):
        r = await api.client.post(cancel_url(shop, due["id"]), headers=user.auth)
        body = assert_problem(r, 409, "invalid-transition")
        assert body["current_status"] == "expired"
    assert await stock_of(resources, product) == 8

    # idempotent: a second run (or a second process) finds nothing and releases nothing
    assert await expire_due(resources, _orders(resources)) == 0
    assert await stock_of(resources, product) == 8
    assert await order_status_in_db(resources, not_due["id"]) == "pending"


async def test_an_order_from_before_expiry_existed_expires_after_the_window(
    api: Api, resources: Resources
) -> None:
    """No `expires_at` (placed before migration 0008, or by an older release during a rolling
    deploy): due at created_at + the payment window."""
    _staff, shop, product = await _setup(api, stock=10)
    customer = await api.user()
    old = await api.order(customer, shop, (product, 2))
    recent = await api.order(customer, shop, (product, 1))
    window = timedelta(minutes=_orders(resources).payment_window_minutes)
    await _set_order(resources, old["id"], expires_at=None, created_at=utcnow() - window - HOUR)
    await _set_order(resources, recent["id"], expires_at=None)

    assert await expire_due(resources, _orders(resources)) == 1

    assert await order_status_in_db(resources, old["id"]) == "expired"
    assert await order_status_in_db(resources, recent["id"]) == "pending"
    assert await stock_of(resources, product) == 9


async def test_a_backlog_larger_than_a_batch_is_expired_in_several_transactions(
    api: Api, resources: Resources
) -> None:
    _staff, shop, product = await _setup(api, stock=100)
    customers = [await api.user() for _ in range(5)]
    orders = [await api.order(c, shop, (product, 2)) for c in customers]
    for order in orders:
        await _past_due(resources, order["id"])

    small = OrdersSettings(expiry_batch_size=2)
    assert await expire_due(resources, small) == 5

    assert {await order_status_in_db(resources, o["id"]) for o in orders} == {"expired"}
    assert await stock_of(resources, product) == 100


@pytest.mark.parametrize("round_", range(3))
async def test_cancel_racing_expiry_releases_the_stock_once(
    api: Api, resources: Resources, round_: int
) -> None:
    """Cancellations and the expiry job on the same orders at once: each order ends either
    cancelled (the cancel answered 200) or expired (the cancel answered 409), and its units
    are back exactly once."""
    _staff, shop, product = await _setup(api, stock=100)
    customers = [await api.user() for _ in range(8)]
    orders = [await api.order(c, shop, (product, 3)) for c in customers]
    assert await stock_of(resources, product) == 100 - 8 * 3
    for order in orders:
        await _past_due(resources, order["id"])

    async def cancel(customer: UserHandle, order: dict[str, Any]) -> int:
        r = await api.client.post(cancel_url(shop, order["id"]), headers=customer.auth)
        return r.status_code

    results = await asyncio.gather(
        expire_due(resources, OrdersSettings(expiry_batch_size=3)),
        *(cancel(c, o) for c, o in zip(customers, orders, strict=True)),
        expire_due(resources, OrdersSettings(expiry_batch_size=3)),
    )
    expired_by_jobs = results[0] + results[-1]
    cancels = results[1:-1]

    assert set(cancels) <= {200, 409}, cancels
    statuses = [await order_status_in_db(resources, o["id"]) for o in orders]
    for code, status in zip(cancels, statuses, strict=True):
        assert (code, status) in {(200, "cancelled"), (409, "expired")}, (code, status)
    assert expired_by_jobs == statuses.count("expired")
    assert await stock_of(resources, product) == 100  # every unit back, none twice


async def test_expiry_runs_on_a_schedule_in_the_api_process(database_url: str) -> None:
    """The embedded default (no broker): the API process's lifespan runs the job."""
    import httpx2
    from asgi_lifespan import LifespanManager

    from storefront.app import create_app
    from tests.conftest import _empty_tables
    from tests.support.factories import Api as ApiHelper

    settings: Settings = make_settings(database_url, orders={"expiry_interval_seconds": 1})
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                helper = ApiHelper(client)
                _owner, staff, shop = await shop_with_staff(helper)
                product = await helper.product(staff, shop, stock=4)
                order = await helper.order(await helper.user(), shop, (product, 2))
                await _past_due(resources, order["id"])
                for _ in range(100):
                    if await order_status_in_db(resources, order["id"]) == "expired":
                        break
                    await asyncio.sleep(0.1)
                assert await order_status_in_db(resources, order["id"]) == "expired"
                assert await stock_of(resources, product) == 4
        finally:
            await _empty_tables(resources)


async def test_the_openapi_document_states_the_expired_status_and_the_deadline(
    api: Api,
) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert "expired" in components["OrderStatus"]["enum"]
    expires = components["OrderOut"]["properties"]["expires_at"]
    assert "expired" in expires["description"]
    assert "/api/v1/shops/{shop_id}/order-limits" in schema["paths"]


async def test_with_a_broker_the_worker_runs_expiry_and_the_api_does_not(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Full mode: `storefront worker` runs the schedule; the API process leaves it alone."""
    import os
    import subprocess
    import sys

    import httpx2
    from asgi_lifespan import LifespanManager

    from storefront.app import create_app
    from tests.conftest import _empty_tables
    from tests.support.factories import Api as ApiHelper
    from tests.support.servers import stop

    queue = f"{redis_prefix}jobs"
    settings = make_settings(
        database_url,
        broker_url=redis_url,
        redis_prefix=redis_prefix,
        jobs={"queue": queue},
        orders={"expiry_interval_seconds": 1},
    )
    env = {
        **os.environ,
        "STOREFRONT_ENVIRONMENT": "test",
        "STOREFRONT_DATABASE_URL": database_url,
        "STOREFRONT_BROKER_URL": redis_url,
        "STOREFRONT_REDIS_PREFIX": redis_prefix,
        "STOREFRONT_JOBS__QUEUE": queue,
        "STOREFRONT_ORDERS__EXPIRY_INTERVAL_SECONDS": "1",
        "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT": "0",
    }
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        try:
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                helper = ApiHelper(client)
                _owner, staff, shop = await shop_with_staff(helper)
                product = await helper.product(staff, shop, stock=4)
                order = await helper.order(await helper.user(), shop, (product, 2))
                await _past_due(resources, order["id"])
                # the API process (broker set) runs no expiry: still pending 2 s later
                await asyncio.sleep(2)
                assert await order_status_in_db(resources, order["id"]) == "pending"

                worker = subprocess.Popen(  # noqa: ASYNC220 - started once, then polled
                    [sys.executable, "-m", "storefront.cli", "worker"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                try:
                    for _ in range(300):
                        if await order_status_in_db(resources, order["id"]) == "expired":
                            break
                        await asyncio.sleep(0.1)
                finally:
                    text = await asyncio.to_thread(stop, worker)
                assert await order_status_in_db(resources, order["id"]) == "expired", text
                assert await stock_of(resources, product) == 4
                assert worker.returncode == 0, text
        finally:
            await _empty_tables(resources)


async def test_an_expired_order_is_announced_to_webhook_subscribers(
    open_api: Api,  # noqa: F811
    open_app: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    from standardwebhooks.webhooks import Webhook

    api = open_api
    resources: Resources = open_app[0].state.resources
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=5)
    hook = await subscribe(api, owner, shop, receiver.url, ["order.expired"])
    order = await api.order(customer, shop, (product, 2))
    await _past_due(resources, order["id"])

    assert await expire_due(resources, _orders(resources)) == 1

    (message,) = await receiver.wait_for(1)
    payload = Webhook(hook["secret"]).verify(message.body, message.headers)
    assert payload["type"] == "order.expired"
    assert payload["data"]["id"] == order["id"]
    assert payload["data"]["status"] == "expired"
