"""Domain events through a real RabbitMQ (FastStream), on SQLite and PostgreSQL: relay after
a broker outage, inbox deduplication, and poison messages in the dead-letter queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx2
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events import CloudEvent, Consumer, DomainEvent, EventBus, EventType, record
from storefront.events.envelope import CONTENT_TYPE
from storefront.events.outbox import RelayConfig, to_cloudevent
from storefront.kit.db import run_after_commit
from storefront.resources import Resources
from storefront.sales import CONSUMERS, SALES_PROJECTION
from tests.conftest import make_settings
from tests.support.apps import running_app
from tests.support.events import (
    events_database,
    eventually,
    inbox,
    projection,
    stored_events,
)
from tests.support.factories import V1, Api
from tests.support.orders import cancel_url
from tests.support.servers import TcpProxy


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with events_database(database_url) as maker:
        yield maker


@dataclass
class Names:
    exchange: str
    consumers: list[Consumer]

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.exchange}.dead-letter"

    def queues(self) -> list[str]:
        return [self.dead_letter_queue, *(f"{self.exchange}.{c.name}" for c in self.consumers)]


@pytest.fixture
async def names(rabbitmq_url: str) -> AsyncIterator[Names]:
    """An exchange of this test's own; its queues and exchanges are deleted afterwards."""
    found = Names(f"sf-test-events-{uuid.uuid4().hex[:10]}", [SALES_PROJECTION])
    yield found
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        for queue in found.queues():
            await channel.queue_delete(queue)
        for exchange in (found.exchange, f"{found.exchange}.dlx"):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def _bus(
    sessionmaker: async_sessionmaker[AsyncSession], url: str, names: Names, **kwargs: Any
) -> EventBus:
    return EventBus(
        sessionmaker,
        broker_url=url,
        exchange=names.exchange,
        consumers=names.consumers,
        consume=True,
        relay=RelayConfig(
            poll_seconds=0.2,
            send_timeout_seconds=3.0,
            base_delay_seconds=0.1,
            max_delay_seconds=1.0,
        ),
        **kwargs,
    )


async def _record_order_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    event_type: EventType,
    *,
    shop_id: uuid.UUID,
    cents: int,
) -> uuid.UUID:
    async with sessionmaker() as session:
        async with session.begin():
            event_id = record(
                session,
                event_type,
                subject=f"orders/{uuid.uuid4()}",
                shop_id=shop_id,
                data={"shop_id": str(shop_id), "currency": "EUR", "total_cents": cents},
            )
        await run_after_commit(session)  # wakes the relay, as a request's commit does
    return event_id


async def _dead_letters(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take what waits in the dead-letter queue."""
    taken = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        dead = await channel.get_queue(queue, ensure=True)
        while (message := await dead.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    finally:
        await connection.close()
    return taken


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_events_recorded_during_a_broker_outage_are_relayed_once_it_is_back(
    sessionmaker: async_sessionmaker[AsyncSession], rabbitmq_url: str, names: Names
) -> None:
    upstream = aio_pika.connection.make_url(rabbitmq_url)
    async with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5672) as proxy:
        url = str(upstream.with_port(proxy.port))
        bus = _bus(sessionmaker, url, names)
        await bus.start()
        try:
            assert bus.connected
            shop_id = uuid.uuid4()
            await proxy.down()  # the broker vanishes: connections cut, new ones refused
            event_id = await _record_order_event(
                sessionmaker, EventType.order_placed, shop_id=shop_id, cents=4200
            )

            async def row() -> DomainEvent:
                async with sessionmaker() as session:
                    found = await session.get(DomainEvent, event_id)
                    assert found is not None
                    return found

            failed = await eventually(
                row, lambda r: r.last_error is not None, what="a failed relay attempt"
            )
            assert failed.published_at is None
            assert failed.attempts >= 1
            waiting, age = await bus.relay.backlog()  # what the backlog gauges report
            assert waiting == 1
            assert age > 0
            assert await projection(sessionmaker) == []

            await proxy.up()
            relayed = await eventually(
                row, lambda r: r.published_at is not None, what="the relay after the outage"
            )
            assert relayed.next_attempt_at is None
            assert await bus.relay.backlog() == (0, 0.0)
            rows = await eventually(
                lambda: projection(sessionmaker), bool, what="the projection from RabbitMQ"
            )
            assert [(r["shop_id"], r["orders_placed"], r["placed_cents"]) for r in rows] == [
                (shop_id, 1, 4200)
            ]
            assert await inbox(sessionmaker, SALES_PROJECTION.name) == {str(event_id)}
        finally:
            await bus.stop()


async def test_the_same_event_delivered_twice_is_counted_once(
    sessionmaker: async_sessionmaker[AsyncSession], rabbitmq_url: str, names: Names
) -> None:
    bus = _bus(sessionmaker, rabbitmq_url, names)
    await bus.start()
    try:
        shop_id = uuid.uuid4()
        await _record_order_event(sessionmaker, EventType.order_placed, shop_id=shop_id, cents=500)
        first = await eventually(lambda: projection(sessionmaker), bool, what="first delivery")
        duplicates = _metric(
            "storefront_events_consumed_total",
            consumer=SALES_PROJECTION.name,
            outcome="duplicate",
        )
        # the broker delivers it again (a relay that crashed before marking it sent does this)
        [row] = await stored_events(sessionmaker)
        assert bus.broker is not None
        await bus.broker.publish(to_cloudevent(row), confirm_seconds=5)
        await eventually(
            lambda: _async(
                _metric(
                    "storefront_events_consumed_total",
                    consumer=SALES_PROJECTION.name,
                    outcome="duplicate",
                )
            ),
            lambda value: value == duplicates + 1,
            what="the duplicate acknowledged",
        )
        assert await projection(sessionmaker) == first
        assert [(r["orders_placed"], r["placed_cents"]) for r in first] == [(1, 500)]
    finally:
        await bus.stop()


async def _async(value: float) -> float:
    return value


async def test_poison_messages_go_to_the_dead_letter_queue(
    sessionmaker: async_sessionmaker[AsyncSession], rabbitmq_url: str, names: Names
) -> None:
    async def broken(session: AsyncSession, event: CloudEvent) -> None:
        raise RuntimeError("this consumer's dependency is broken")

    failing = Consumer(name="always-failing", binding="order.paid", handle=broken)
    names.consumers.append(failing)
    bus = _bus(sessionmaker, rabbitmq_url, names, max_deliveries=3)
    await bus.start()
    undecodable = _metric(
        "storefront_events_dead_lettered_total",
        consumer=SALES_PROJECTION.name,
        reason="undecodable",
    )
    gave_up = _metric(
        "storefront_events_dead_lettered_total", consumer=failing.name, reason="failing"
    )
    try:
        # 1. a body that is not a CloudEvent, published straight to the exchange
        connection = await aio_pika.connect(rabbitmq_url)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(names.exchange)
            await exchange.publish(
                aio_pika.Message(b"\x00 not json", content_type=CONTENT_TYPE),
                routing_key="order.placed",
            )
        finally:
            await connection.close()
        # 2. a real event that one consumer fails on every delivery
        shop_id = uuid.uuid4()
        paid = await _record_order_event(
            sessionmaker, EventType.order_paid, shop_id=shop_id, cents=700
        )

        collected: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def dead() -> int:
            collected.extend(await _dead_letters(rabbitmq_url, names.dead_letter_queue))
            return len(collected)

        await eventually(dead, lambda n: n >= 2, what="two dead letters")
        by_body = {message.body: message for message in collected}
        assert b"\x00 not json" in by_body
        failed = next(m for m in collected if m.body != b"\x00 not json")
        assert str(paid) in failed.body.decode()
        assert failed.routing_key == failing.name  # which consumer gave up on it
        assert (
            _metric(
                "storefront_events_dead_lettered_total",
                consumer=SALES_PROJECTION.name,
                reason="undecodable",
            )
            == undecodable + 1
        )
        assert (
            _metric(
                "storefront_events_dead_lettered_total", consumer=failing.name, reason="failing"
            )
            == gave_up + 1
        )
        # the healthy consumer handled the same event once, unaffected
        rows = await eventually(lambda: projection(sessionmaker), bool, what="the projection")
        assert [(r["orders_paid"], r["revenue_cents"]) for r in rows] == [(1, 700)]
        assert str(paid) not in await inbox(sessionmaker, failing.name)
    finally:
        await bus.stop()


async def test_the_api_publishes_and_the_worker_consumes_what_waited_in_its_queue(
    database_url: str, rabbitmq_url: str, names: Names
) -> None:
    """The full mode: the API relays to RabbitMQ and consumes nothing; events published
    before any worker ran wait in the consumer's queue (the API declared it) and reach the
    projection once a worker consumes."""
    settings = make_settings(
        database_url, events={"broker_url": rabbitmq_url, "exchange": names.exchange}
    )
    async with running_app(settings) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            api = Api(c, resources)
            owner = await api.user()
            customer = await api.user()
            shop = await api.shop(owner)
            product = await api.product(owner, shop, stock=9, price_cents=150)
            first = await api.order(customer, shop, (product, 2))
            await api.order(customer, shop, (product, 1))
            r = await c.post(cancel_url(shop, first["id"]), headers=customer.auth)
            assert r.status_code == 200, r.text

            async def published() -> list[DomainEvent]:
                return await stored_events(resources.sessionmaker)

            events = await eventually(
                published,
                lambda rows: len(rows) == 4 and all(e.published_at for e in rows),
                what="the API's relay publishing to RabbitMQ",
            )
            assert sorted(e.type for e in events) == [
                "order.cancelled",
                "order.placed",
                "order.placed",
                "product.changed",
            ]
            assert await projection(resources.sessionmaker) == []  # the API consumes nothing

            worker = EventBus.from_settings(
                settings, resources.sessionmaker, CONSUMERS, consume=True
            )
            await worker.start()
            try:

                def consumed_all(resp: httpx2.Response) -> bool:
                    days = resp.json()["days"] if resp.status_code == 200 else []
                    return bool(days) and (
                        days[0]["orders_placed"],
                        days[0]["orders_cancelled"],
                    ) == (2, 1)

                r = await eventually(
                    lambda: c.get(f"{V1}/shops/{shop['id']}/sales", headers=owner.auth),
                    consumed_all,
                    what="the sales projection fed by the worker",
                )
                [day] = r.json()["days"]
                assert (day["orders_placed"], day["placed_cents"]) == (2, 450)
                assert day["orders_cancelled"] == 1
            finally:
                await worker.stop()
