"""The process's domain-event machinery: the relay and, where this process consumes, the
consumers (RabbitMQ through FastStream, or in-process on the embedded mode)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storefront.events.consumers import Consumer, Outcome, process
from storefront.events.envelope import CloudEvent, encode
from storefront.events.metrics import EVENTS_PUBLISHED
from storefront.events.outbox import EventRelay, RelayConfig, describe_error
from storefront.events.rabbit import EventBroker, build_broker
from storefront.infra.availability import Backoff, dependency, spawn
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.settings import Settings

logger = logging.getLogger("storefront.events")

BROKER_BACKOFF_CAP = 30.0
# its outages are logged once each way under this name (infra/availability.py)
EVENTS_DEPENDENCY = "events' RabbitMQ"
EVENTS_POOL_SIZE = 2  # the relay and the in-process consumers: one pass at a time
IN_PROCESS_RETRY_DELAY = 0.05  # doubled after each failed in-process delivery


def events_broker_url(settings: Settings) -> str | None:
    """RabbitMQ for events: STOREFRONT_EVENTS__BROKER_URL, else STOREFRONT_BROKER_URL when it
    is amqp://; None: in-process delivery (also when STOREFRONT_EVENTS__IN_PROCESS is set)."""
    if settings.events.in_process:
        return None
    url = settings.events.broker_url or settings.broker_url
    if url is not None and urlsplit(url).scheme in {"amqp", "amqps"}:
        return url
    return None


def _own_engine(engine: AsyncEngine, settings: Settings) -> AsyncEngine:
    """A small pool of the events' own (the relay and the in-process consumers): they keep
    working when requests exhaust theirs, and their statements never show up among a
    request's. A private in-memory SQLite database is only visible to its own engine."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return engine
    return create_engine(
        url.render_as_string(hide_password=False),
        pool_size=EVENTS_POOL_SIZE,
        max_overflow=0,
        pool_timeout=settings.database.pool_timeout_seconds,
        connect_timeout=settings.database.connect_timeout_seconds,
        statement_timeout_ms=settings.database.statement_timeout_ms,
        application_name="storefront-events",
    )


class ConsumerUnavailable(RuntimeError):
    """An in-process consumer's dependency is away: the event is relayed again later."""


class BrokerAway(ConnectionError):
    """The events' broker is not connected (yet): the relay retries later."""


class EventBus:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        broker_url: str | None,
        exchange: str,
        consumers: Sequence[Consumer],
        consume: bool,
        relay: RelayConfig | None = None,
        max_deliveries: int = 5,
    ) -> None:
        """``consume``: run the consumers here (the worker; always on the in-process mode).
        Without ``broker_url`` the relay hands each event straight to the consumers."""
        self.sessionmaker = sessionmaker
        self.consumers = tuple(consumers)
        self.max_deliveries = max_deliveries
        self.in_process = broker_url is None
        self.consume = consume or self.in_process
        self.relay_config = relay or RelayConfig()
        self.broker: EventBroker | None = None
        if broker_url is not None:
            self.broker = build_broker(
                broker_url,
                exchange=exchange,
                consumers=self.consumers,
                sessionmaker=lambda: self.sessionmaker,
                max_deliveries=max_deliveries,
            )
        self.relay = EventRelay(
            sessionmaker,
            self._deliver_in_process if self.in_process else self._publish,
            self.relay_config,
        )
        self.connected = False
        self._connector: asyncio.Task[None] | None = None
        self._own_engine: AsyncEngine | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        consumers: Sequence[Consumer],
        *,
        consume: bool,
    ) -> EventBus:
        events = settings.events
        engine = _own_engine(sessionmaker.kw["bind"], settings)
        bus = cls(
            create_sessionmaker(engine),
            broker_url=events_broker_url(settings),
            exchange=events.exchange,
            consumers=consumers,
            consume=consume,
            relay=RelayConfig(
                poll_seconds=events.poll_seconds,
                batch_size=events.batch_size,
                send_timeout_seconds=events.send_timeout_seconds,
            ),
            max_deliveries=events.max_deliveries,
        )
        if engine is not sessionmaker.kw["bind"]:
            bus._own_engine = engine
        return bus

    async def start(self) -> None:
        """Start relaying (and consuming); a broker that is away is connected in the
        background, with back-off, while recorded events wait in the table."""
        if self.broker is not None:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - the stream keeps the events meanwhile
                dependency(EVENTS_DEPENDENCY).down(describe_error(exc))
                self._connector = spawn(self._connect_until_up(), name="storefront-events-broker")
        self.relay.start()

    async def _connect(self) -> None:
        assert self.broker is not None  # noqa: S101 - only called with a broker
        broker = self.broker.broker
        try:
            with anyio.fail_after(max(self.relay_config.send_timeout_seconds, 1.0)):
                await broker.connect()
                await self.broker.declare()
                if self.consume:
                    await broker.start()
        except BaseException:
            with anyio.move_on_after(2, shield=True):
                await broker.stop()
            raise
        self.connected = True
        dependency(EVENTS_DEPENDENCY).up()
        self.relay.wake()

    async def _connect_until_up(self) -> None:
        backoff = Backoff(0.5, BROKER_BACKOFF_CAP)
        while not self.connected:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                dependency(EVENTS_DEPENDENCY).down(describe_error(exc))
                await asyncio.sleep(backoff.next_delay())

    async def stop(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
        await self.relay.stop()
        if self.broker is not None:
            self.connected = False
            await self.broker.broker.stop()
        if self._own_engine is not None:
            await self._own_engine.dispose()
            self._own_engine = None

    async def _publish(self, event: CloudEvent) -> None:
        if self.broker is None or not self.connected:
            raise BrokerAway("the events broker is not connected")
        await self.broker.publish(event, confirm_seconds=self.relay_config.send_timeout_seconds)
        EVENTS_PUBLISHED.labels(type=event.type).inc()

    async def _deliver_in_process(self, event: CloudEvent) -> None:
        """The embedded mode: each consumer that wants the event gets it here, with the same
        decoding, inbox and poison handling as from RabbitMQ (a poison event is counted and
        logged; the stream keeps it for a replay)."""
        body = encode(event)
        EVENTS_PUBLISHED.labels(type=event.type).inc()
        for consumer in self.consumers:
            if not consumer.wants(event.type):
                continue
            delay = IN_PROCESS_RETRY_DELAY
            for delivery in range(1, self.max_deliveries + 1):
                outcome = await process(
                    self.sessionmaker,
                    consumer,
                    body,
                    delivery=delivery,
                    max_deliveries=self.max_deliveries,
                )
                if outcome is not Outcome.retry:
                    break
                await asyncio.sleep(delay)  # back-off between deliveries, not a wait for state
                delay *= 2
            else:
                # still failing, on a dependency that is away: the relay keeps the event and
                # retries it later (the consumers that did handle it skip it by their inbox)
                raise ConsumerUnavailable(f"consumer {consumer.name} could not handle {event.id}")
