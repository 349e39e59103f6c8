"""Domain events on the embedded mode (in-process delivery), on SQLite and PostgreSQL: the
event is written in the transaction of the change, relayed, and consumed once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.events import CloudEvent, Consumer, EventType, consume_once, record
from storefront.events.consumers import Outcome, process
from storefront.events.envelope import decode, encode
from storefront.events.outbox import to_cloudevent
from storefront.kit.db import create_engine, create_sessionmaker, utcnow
from storefront.orders.expiry import expire_due
from storefront.resources import Resources
from storefront.sales import SALES_PROJECTION
from tests.support.events import eventually, projection, relayed_and_consumed, stored_events
from tests.support.factories import V1, Api
from tests.support.orders import cancel_url
from tests.support.servers import free_port


async def _shop_with_product(api: Api, **product: Any) -> tuple[Any, Any, dict[str, Any], Any]:
    owner = await api.user()
    customer = await api.user()
    shop = await api.shop(owner)
    item = await api.product(owner, shop, **product)
    return owner, customer, shop, item


async def test_a_placed_order_records_its_event_as_a_cloudevent(
    api: Api, resources: Resources
) -> None:
    _, customer, shop, product = await _shop_with_product(api, stock=5, price_cents=1250)
    order = await api.order(customer, shop, (product, 2))

    events = await stored_events(resources.sessionmaker)
    placed = [e for e in events if e.type == "order.placed"]
    assert len(placed) == 1
    row = placed[0]
    assert row.subject == f"orders/{order['id']}"
    assert str(row.shop_id) == shop["id"]
    assert row.data["total_cents"] == 2500
    assert row.data["currency"] == product["currency"]
    assert "shipping_address" not in row.data  # no personal data in events
    # the catalog's change is an event of its own
    assert [e.subject for e in events if e.type == "product.changed"] == [
        f"products/{product['id']}"
    ]
    # CloudEvents 1.0, structured mode: the context attributes and data in one JSON object
    document = decode(encode(to_cloudevent(row)))
    assert document.specversion == "1.0"
    assert document.id == row.id
    assert document.type == "order.placed"
    assert document.source == "/storefront"
    assert document.datacontenttype == "application/json"
    assert document.time == row.occurred_at


async def _ids(resources: Resources) -> list[tuple[str, str]]:
    return [(str(e.id), e.type) for e in await stored_events(resources.sessionmaker)]


async def test_a_change_that_rolls_back_records_no_event(api: Api, resources: Resources) -> None:
    _, customer, shop, product = await _shop_with_product(api, stock=1)
    before = await _ids(resources)

    r = await api.place_order(customer, shop, (product, 2))  # more than the stock: refused
    assert r.status_code == 409, r.text
    assert await _ids(resources) == before

    # and directly: an event recorded in a transaction that rolls back never existed
    async with resources.sessionmaker() as session, session.begin():
        record(
            session,
            EventType.order_paid,
            subject="orders/x",
            data={"shop_id": shop["id"], "currency": "EUR", "amount_cents": 1},
        )
        await session.flush()  # it was in the database, inside the transaction
        await session.rollback()
    assert await _ids(resources) == before


async def test_record_refuses_an_undeclared_type_or_data_that_is_not_json(
    resources: Resources,
) -> None:
    async with resources.sessionmaker() as session:
        with pytest.raises(ValueError, match=r"order\.shipped"):
            record(session, "order.shipped", subject="orders/x", data={})
        with pytest.raises(TypeError):
            record(session, EventType.order_paid, subject="orders/x", data={"at": object()})
        assert not session.new


async def test_the_embedded_relay_delivers_to_the_projection_in_process(
    api: Api, resources: Resources, client: Any
) -> None:
    _owner, customer, shop, product = await _shop_with_product(api, stock=5, price_cents=700)
    first = await api.order(customer, shop, (product, 1))
    await api.order(customer, shop, (product, 3))
    r = await client.post(cancel_url(shop, first["id"]), headers=customer.auth)
    assert r.status_code == 200, r.text

    await eventually(
        lambda: relayed_and_consumed(resources.sessionmaker, SALES_PROJECTION.name, "order."),
        bool,
        what="events relayed and consumed",
    )
    rows = await projection(resources.sessionmaker)
    assert len(rows) == 1
    row = rows[0]
    assert str(row["shop_id"]) == shop["id"]
    assert row["day"] == utcnow().date()
    assert (row["orders_placed"], row["placed_cents"]) == (2, 2800)
    assert row["orders_cancelled"] == 1
    assert (row["orders_paid"], row["revenue_cents"]) == (0, 0)


def _event(shop_id: uuid.UUID, event_type: str = "order.placed", **data: Any) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        source="/storefront",
        type=event_type,
        time=utcnow(),
        subject="orders/test",
        data={"shop_id": str(shop_id), "currency": "EUR", "total_cents": 900, **data},
    )


async def test_the_inbox_counts_an_event_once(resources: Resources) -> None:
    shop_id = uuid.uuid4()
    event = _event(shop_id)
    assert await consume_once(resources.sessionmaker, SALES_PROJECTION, event) is True
    assert await consume_once(resources.sessionmaker, SALES_PROJECTION, event) is False
    outcome = await process(
        resources.sessionmaker, SALES_PROJECTION, encode(event), delivery=2, max_deliveries=5
    )
    assert outcome is Outcome.duplicate
    rows = await projection(resources.sessionmaker)
    assert [(r["orders_placed"], r["placed_cents"]) for r in rows] == [(1, 900)]


def _dead(consumer: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_events_dead_lettered_total", {"consumer": consumer, "reason": reason}
    )
    return value or 0.0


async def test_poison_messages_are_dead_lettered_and_counted(resources: Resources) -> None:
    # undecodable: at once, whatever the delivery
    before = _dead(SALES_PROJECTION.name, "undecodable")
    outcome = await process(
        resources.sessionmaker, SALES_PROJECTION, b"{not json", delivery=1, max_deliveries=5
    )
    assert outcome is Outcome.dead_letter
    # a CloudEvent the projection cannot use (no currency): no retry can fix it
    malformed = _event(uuid.uuid4())
    del malformed.data["currency"]
    outcome = await process(
        resources.sessionmaker, SALES_PROJECTION, encode(malformed), delivery=1, max_deliveries=5
    )
    assert outcome is Outcome.dead_letter
    assert _dead(SALES_PROJECTION.name, "undecodable") == before + 2

    # a handler that fails: retried until the last delivery, then dead-lettered
    async def failing(session: AsyncSession, event: CloudEvent) -> None:
        raise RuntimeError("the handler's dependency is broken")

    consumer = Consumer(name=f"failing-{uuid.uuid4().hex[:6]}", binding="#", handle=failing)
    body = encode(_event(uuid.uuid4()))
    outcomes = [
        await process(resources.sessionmaker, consumer, body, delivery=n, max_deliveries=3)
        for n in (1, 2, 3)
    ]
    assert outcomes == [Outcome.retry, Outcome.retry, Outcome.dead_letter]
    assert _dead(consumer.name, "failing") == 1
    assert await projection(resources.sessionmaker) == []  # nothing half-applied


async def test_a_database_outage_is_never_a_poison_message() -> None:
    """The consumer's database away is the dependency's fault, not the event's: the message is
    retried however often it was delivered, never dead-lettered."""
    engine = create_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/absent", pool_timeout=2
    )
    try:
        before = _dead(SALES_PROJECTION.name, "failing")
        outcome = await process(
            create_sessionmaker(engine),
            SALES_PROJECTION,
            encode(_event(uuid.uuid4())),
            delivery=5,
            max_deliveries=5,
        )
    finally:
        await engine.dispose()
    assert outcome is Outcome.retry
    assert _dead(SALES_PROJECTION.name, "failing") == before


async def test_expiry_and_every_product_change_record_their_events(
    api: Api, resources: Resources, client: Any
) -> None:
    owner, customer, shop, product = await _shop_with_product(api, stock=5, price_cents=400)
    order = await api.order(customer, shop, (product, 1))
    url = f"{V1}/shops/{shop['id']}/products/{product['id']}"
    r = await client.patch(url, json={"price_cents": 450}, headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await client.delete(url, headers=owner.auth)
    assert r.status_code == 204, r.text
    # the payment window passed (time given, not waited for)
    later = utcnow() + timedelta(minutes=resources.settings.orders.payment_window_minutes + 1)
    assert await expire_due(resources, resources.settings.orders, now=later) == 1

    events = await stored_events(resources.sessionmaker)
    [expired] = [e for e in events if e.type == "order.expired"]
    assert expired.subject == f"orders/{order['id']}"
    assert expired.data["status"] == "expired"
    assert expired.data["total_cents"] == 400
    changes = [(e.data["change"], e.data["version"]) for e in events if e.type == "product.changed"]
    # the order's reservation made version 2: stock taken by orders is not a product.changed
    assert changes == [("created", 1), ("updated", 3), ("archived", None)]
