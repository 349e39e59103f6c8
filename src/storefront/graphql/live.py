"""Live updates for GraphQL subscriptions (decision 0147): the domain events, fanned out to
every API process.

A consumer of the domain events (``live_consumer``, bound to every event type) announces
each event once, from whichever process handles it (an API process on the in-process mode,
the worker with RabbitMQ). With Redis the announcement is a PUBLISH on
``<redis prefix>graphql:events``, which every API process's :class:`LiveHub` is SUBSCRIBEd
to; without Redis (the embedded, single-process mode) it goes straight to the local hub.
The hub hands each event to its local subscriptions, each with a bounded queue: a
subscriber too slow to keep up loses its subscription (it is told, and may subscribe
again), it never slows the others down nor grows the process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.events import CloudEvent, Consumer
from storefront.infra.availability import Backoff, dependency
from storefront.kit.errors import DomainError

logger = logging.getLogger("storefront.graphql")
CHANNEL = "graphql:events"
QUEUE_SIZE = 256  # events one subscription may have waiting before it is dropped
LIVE_DEPENDENCY = "live updates' Redis"
POLL_SECONDS = 0.5  # the listener's longest read: how soon it sees stop()
STOP_SECONDS = 3.0  # how long stop() waits for it (twice at most)


class SubscriberTooSlow(DomainError):
    """The subscription's queue overflowed: it ends (the client may subscribe again)."""

    status = 503
    slug = "subscriber-too-slow"
    title = "Subscriber too slow"


@dataclass(eq=False)
class _Subscription:
    wants: Callable[[CloudEvent], bool]
    queue: asyncio.Queue[CloudEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    overflowed: bool = False


class LiveHub:
    """One per API process: its subscriptions, fed by Redis (or locally)."""

    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self.redis = redis
        self.channel = prefix + CHANNEL
        self._subscriptions: set[_Subscription] = set()
        self._listener: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.closing = False
        self._stopping = False
        self.listening = asyncio.Event()  # subscribed to the channel (tests wait on it)

    async def start(self) -> None:
        if self.redis is not None:
            self._listener = asyncio.create_task(self._listen(), name="storefront-graphql-live")

    def watch(self, draining: Callable[[], bool], every: float = 0.25) -> None:
        """Complete every subscription as soon as ``draining()`` turns true (SIGTERM): the
        clients get a ``complete`` for each during the drain, before the server closes
        their connections, and resubscribe elsewhere."""

        async def wait() -> None:
            while not draining():  # noqa: ASYNC110 - set by a signal handler, not awaitable
                await asyncio.sleep(every)  # a flag set from a signal handler: polled
            self.complete_all()

        self._watcher = asyncio.create_task(wait(), name="storefront-graphql-drain")

    def complete_all(self) -> None:
        """End every subscription (and refuse new ones): the process is going away."""
        self.closing = True
        for subscription in list(self._subscriptions):
            with contextlib.suppress(asyncio.QueueFull):
                subscription.queue.put_nowait(None)

    async def stop(self) -> None:
        """Stop listening, bounded: the listener checks a flag between short reads (a
        cancellation of redis-py's blocking ``pubsub.listen()`` was seen never to finish,
        hanging the whole shutdown); one still running after the bound is cancelled, and
        shutdown goes on without waiting for it longer."""
        self._stopping = True
        listener, watcher = self._listener, self._watcher
        self._listener = self._watcher = None
        if watcher is not None:
            watcher.cancel()  # it only sleeps
            await asyncio.gather(watcher, return_exceptions=True)
        if listener is not None:
            _, pending = await asyncio.wait({listener}, timeout=STOP_SECONDS)
            if pending:
                listener.cancel()
                await asyncio.wait({listener}, timeout=STOP_SECONDS)
        self.complete_all()

    async def announce(self, event: CloudEvent) -> None:
        """Every process's subscribers learn of ``event`` (this one's only, without Redis)."""
        if self.redis is None:
            self.deliver(event)
            return
        await self.redis.publish(self.channel, event.model_dump_json())

    def deliver(self, event: CloudEvent) -> None:
        """Hand ``event`` to this process's subscriptions that want it."""
        for subscription in list(self._subscriptions):
            if subscription.overflowed or not subscription.wants(event):
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscription.overflowed = True
                subscription.queue.get_nowait()  # room for the end-of-stream mark
                subscription.queue.put_nowait(None)

    def subscribe(self, wants: Callable[[CloudEvent], bool]) -> LiveStream:
        """The events ``wants`` accepts, from this call on (registered now, so a snapshot
        read after it misses nothing) until the stream is closed or the hub stops;
        SubscriberTooSlow if it let too many wait."""
        subscription = _Subscription(wants)
        if self.closing:
            subscription.queue.put_nowait(None)
        else:
            self._subscriptions.add(subscription)
        return LiveStream(self, subscription)

    @property
    def subscriptions(self) -> int:
        return len(self._subscriptions)

    async def _listen(self) -> None:
        assert self.redis is not None  # noqa: S101 - only started with Redis
        backoff = Backoff(0.5, 30.0)
        while not self._stopping:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.listening.set()
                dependency(LIVE_DEPENDENCY).up()
                backoff = Backoff(0.5, 30.0)
                while not self._stopping:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_SECONDS
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        event = CloudEvent.model_validate_json(message["data"])
                    except ValueError:
                        logger.warning("an undecodable live update was dropped")
                        continue
                    self.deliver(event)
            except (RedisError, OSError) as exc:
                self.listening.clear()
                dependency(LIVE_DEPENDENCY).down(type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())  # back-off before reconnecting
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]


class LiveStream:
    """One subscription's events, an async iterator; ``aclose()`` unregisters it."""

    def __init__(self, hub: LiveHub, subscription: _Subscription) -> None:
        self._hub = hub
        self._subscription = subscription

    def __aiter__(self) -> LiveStream:
        return self

    async def __anext__(self) -> CloudEvent:
        event = await self._subscription.queue.get()
        if event is None:
            await self.aclose()
            if self._subscription.overflowed:
                raise SubscriberTooSlow("Too many updates waited for this subscriber.")
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._hub._subscriptions.discard(self._subscription)


def live_consumer(announce: Callable[[CloudEvent], Awaitable[None]]) -> Consumer:
    """The domain-event consumer that feeds the subscriptions. Best effort: while Redis is
    away an update is lost (logged), never retried, so it never holds back the other
    consumers' events; a subscriber that missed one sees the current state on the next."""

    async def handle(_session: AsyncSession, event: CloudEvent) -> None:
        try:
            await announce(event)
        except (RedisError, OSError) as exc:
            dependency(LIVE_DEPENDENCY).down(type(exc).__name__)
            logger.warning("live update %s (%s) not sent: %s", event.id, event.type, exc)

    return Consumer(
        name="graphql-live",
        binding="#",
        handle=handle,
        description="Feeds GraphQL subscriptions (orderUpdated, shopOrders, productChanged).",
    )
