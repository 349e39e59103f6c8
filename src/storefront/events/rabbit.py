"""The events' RabbitMQ topology and transport, through FastStream's ``RabbitBroker``.

- ``<exchange>`` (``storefront.events``): a durable topic exchange; routing key = event type.
- ``<exchange>.<consumer>``: one durable quorum queue per consumer, bound with the consumer's
  pattern; poison messages are rejected to the dead-letter exchange ``<exchange>.dlx``.
- ``<exchange>.dead-letter``: the dead-letter queue, bound to ``<exchange>.dlx`` with ``#``;
  an operator reads (and, once fixed, re-publishes) what lands there.

Both the API (publishing) and the worker (consuming) declare the whole topology, so an event
published before any worker ran still waits in its consumers' queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from faststream.middlewares import AckPolicy
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.events.consumers import Consumer, Outcome, process
from storefront.events.envelope import (
    CONTENT_TYPE,
    EVENT_DESCRIPTIONS,
    CloudEvent,
    EventType,
    encode,
)
from storefront.infra.amqp import cluster_options

RETRY_BASE_SECONDS = 0.2  # before the first redelivery of a failed event; doubled each time
RETRY_CAP_SECONDS = 10.0
SPECIFICATION_URL = "amqp://rabbitmq:5672/"  # the AsyncAPI document's server (any deployment)


class Topology:
    """The names derived from the exchange's."""

    def __init__(self, exchange: str) -> None:
        self.exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
        self.dead_letter_exchange = RabbitExchange(
            f"{exchange}.dlx", type=ExchangeType.TOPIC, durable=True
        )
        self.dead_letter_queue = RabbitQueue(
            f"{exchange}.dead-letter", queue_type=QueueType.QUORUM, durable=True, routing_key="#"
        )

    def queue(self, consumer: Consumer) -> RabbitQueue:
        return RabbitQueue(
            f"{self.exchange.name}.{consumer.name}",
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=consumer.binding,
            arguments={
                "x-dead-letter-exchange": self.dead_letter_exchange.name,
                "x-dead-letter-routing-key": consumer.name,
            },
        )


class EventBroker:
    """FastStream's broker with the events' topology and consumers."""

    def __init__(
        self, broker: RabbitBroker, topology: Topology, consumers: Sequence[Consumer]
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.consumers = tuple(consumers)

    async def declare(self) -> None:
        """Declare exchanges and queues (idempotent), and bind every queue."""
        broker, topology = self.broker, self.topology
        exchange = await broker.declare_exchange(topology.exchange)
        dlx = await broker.declare_exchange(topology.dead_letter_exchange)
        dead = await broker.declare_queue(topology.dead_letter_queue)
        await dead.bind(dlx, routing_key="#")
        for consumer in self.consumers:
            queue = await broker.declare_queue(topology.queue(consumer))
            await queue.bind(exchange, routing_key=consumer.binding)

    async def publish(self, event: CloudEvent, *, confirm_seconds: float) -> None:
        """Publish one event; returns once RabbitMQ confirmed it (publisher confirms)."""
        await self.broker.publish(
            encode(event),
            exchange=self.topology.exchange,
            routing_key=event.type,
            persist=True,
            mandatory=False,
            message_id=str(event.id),
            content_type=CONTENT_TYPE,
            message_type=event.type,
            timestamp=event.time,
            timeout=confirm_seconds,
        )


def build_broker(
    url: str,
    *,
    exchange: str,
    consumers: Sequence[Consumer],
    sessionmaker: Callable[[], async_sessionmaker[AsyncSession]] | None = None,
    max_deliveries: int = 5,
) -> EventBroker:
    """The broker with one publisher per event type and one subscriber per consumer (what
    the AsyncAPI document describes). ``sessionmaker``: where consumers write (None: the
    broker is only described, never run)."""
    topology = Topology(exchange)
    # one node, or the nodes of a cluster tried in turn (decision 0177)
    first, options = cluster_options(url)
    broker = RabbitBroker(
        first,
        specification_url=SPECIFICATION_URL,
        description="Storefront's domain events, CloudEvents 1.0 in structured JSON mode.",
        fail_fast=True,
        reconnect_interval=1.0,
        log_level=10,  # FastStream's per-message lines at DEBUG: the consumers log outcomes
    )
    # FastStream hands its connection options to aio-pika's connect_robust as they are
    broker._connection_kwargs.update(options)
    for event_type in EventType:
        broker.publisher(
            exchange=topology.exchange,
            routing_key=event_type.value,
            persist=True,
            title=f"{event_type.value}:publish",
            description=EVENT_DESCRIPTIONS[event_type],
            schema=CloudEvent,
            content_type=CONTENT_TYPE,
        )
    for consumer in consumers:
        _subscribe(broker, topology, consumer, sessionmaker, max_deliveries)
    return EventBroker(broker, topology, consumers)


def _subscribe(
    broker: RabbitBroker,
    topology: Topology,
    consumer: Consumer,
    sessionmaker: Callable[[], async_sessionmaker[AsyncSession]] | None,
    max_deliveries: int,
) -> None:
    async def handle(message: RabbitMessage) -> None:
        if sessionmaker is None:  # pragma: no cover - a described broker never consumes
            raise RuntimeError("this broker only describes the events")
        headers = message.headers or {}
        # quorum queues count the earlier deliveries of a requeued message
        delivery = int(headers.get("x-delivery-count", 0) or 0) + 1
        outcome = await process(
            sessionmaker(),
            consumer,
            message.body,
            delivery=delivery,
            max_deliveries=max_deliveries,
        )
        if outcome is Outcome.retry:
            # back off before handing it back: a failing handler or an absent database must
            # not spin the queue (the message keeps its place; x-delivery-count grows)
            await asyncio.sleep(min(RETRY_BASE_SECONDS * 2 ** (delivery - 1), RETRY_CAP_SECONDS))
            await message.nack(requeue=True)
        elif outcome is Outcome.dead_letter:
            await message.reject(requeue=False)  # to <exchange>.dlx, then the dead-letter queue
        else:
            await message.ack()

    handle.__name__ = f"consume_{consumer.name.replace('-', '_')}"
    broker.subscriber(
        topology.queue(consumer),
        topology.exchange,
        ack_policy=AckPolicy.MANUAL,
        title=f"{topology.exchange.name}.{consumer.name}:consume",
        description=consumer.description or None,
    )(handle)
