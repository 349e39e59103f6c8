"""Queue depth: how many jobs wait, measured on the broker itself and in the outbox by a task
of each API and worker process, never per request (docs/decisions/0059-job-outbox.md; the
gauges are described in docs/operations.md). Each Redis sample also trims the stream entries
every group has acknowledged; a failed measurement is logged and the gauges keep their last
value."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from taskiq import AsyncBroker, InMemoryBroker

from storefront.infra.availability import report_failure, spawn
from storefront.telemetry import metrics

if TYPE_CHECKING:
    from storefront.jobs.outbox import OutboxRelay

logger = logging.getLogger("storefront.jobs.depth")

# a stream whose lag Redis cannot compute (entries deleted) is counted, up to this many
LAG_COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class QueueDepth:
    waiting: int
    in_progress: int | None = None  # None: this broker does not say


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _redis_depth(broker: Any, queue: str, group_name: str) -> QueueDepth:
    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    async with Redis(connection_pool=broker.connection_pool) as redis:
        try:
            groups = await redis.xinfo_groups(queue)
        except ResponseError:  # no such key: nothing was ever sent
            return QueueDepth(0, 0)
        group = next((g for g in groups if _text(g.get("name")) == group_name), None)
        if group is None:  # no worker has declared the group yet: everything waits
            return QueueDepth(int(await redis.xlen(queue)), 0)
        lag = group.get("lag")
        if lag is None:
            after = _text(group.get("last-delivered-id") or "0-0")
            entries = await redis.xrange(queue, min=f"({after}", max="+", count=LAG_COUNT_CAP)
            lag = len(entries or ())
        await _trim_acknowledged(redis, queue, groups)
        return QueueDepth(int(lag), int(group.get("pending") or 0))


def _stream_id(value: Any) -> tuple[int, int]:
    millis, _, sequence = _text(value).partition("-")
    return int(millis), int(sequence or 0)


async def _trim_acknowledged(redis: Any, queue: str, groups: list[dict[str, Any]]) -> int:
    """Delete the stream entries every consumer group has taken and acknowledged.

    taskiq acknowledges stream entries but never deletes them, so the stream (and Redis's
    memory) would grow with every job ever sent. ``MAXLEN`` is no answer: it trims by count
    and would drop entries still waiting. Safe is everything below, for each group, the
    oldest entry it still has pending, or the entry after its last-delivered one: those
    were delivered and acknowledged (``XTRIM MINID`` deletes the entries below an id).
    """
    floor: tuple[int, int] | None = None
    for group in groups:
        # the first entry this group may still need: after its last delivered one...
        millis, sequence = _stream_id(group.get("last-delivered-id") or "0-0")
        boundary = (millis, sequence + 1)
        if int(group.get("pending") or 0) > 0:  # ...or the oldest it has not acknowledged
            summary = await redis.xpending(queue, _text(group.get("name")))
            if summary.get("min"):
                boundary = min(boundary, _stream_id(summary["min"]))
        floor = boundary if floor is None else min(floor, boundary)
    if floor is None or floor <= (0, 1):
        return 0
    return int(await redis.xtrim(queue, minid=f"{floor[0]}-{floor[1]}", approximate=False))


async def _rabbitmq_depth(broker: Any, queue: str) -> QueueDepth:
    connection = broker.write_conn
    if connection is None:
        raise RuntimeError("the broker is not started")
    # a channel of its own: a passive declare of a missing queue closes its channel
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return QueueDepth(int(declared.declaration_result.message_count))
    finally:
        await channel.close()


async def measure_broker(broker: AsyncBroker, queue: str) -> QueueDepth:
    """The broker's own count of jobs waiting in ``queue``."""
    if isinstance(broker, InMemoryBroker):
        return QueueDepth(len(getattr(broker, "_running_tasks", ())))
    kind = type(broker).__name__
    kinds = {cls.__name__ for cls in type(broker).__mro__}  # a subclass counts as its base
    if "RedisStreamBroker" in kinds:
        return await _redis_depth(broker, queue, getattr(broker, "consumer_group_name", queue))
    if "AioPikaBroker" in kinds:
        return await _rabbitmq_depth(broker, queue)
    raise TypeError(f"no queue depth for {kind}")


class QueueDepthSampler:
    """Measures the broker queue and the outbox every ``interval`` seconds into the gauges."""

    def __init__(
        self, broker: AsyncBroker, queue: str, relay: OutboxRelay | None, interval: float
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.relay = relay
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._broker_ok = True

    async def sample(self) -> None:
        """One measurement of each; a failure is logged and leaves that gauge as it was."""
        timeout = max(min(self.interval, 5.0), 0.5)
        try:
            with anyio.fail_after(timeout):
                depth = await measure_broker(self.broker, self.queue)
        except Exception as exc:  # noqa: BLE001 - a metric never takes the process down
            # the broker away: said once by its status (and /healthz), not every interval
            if self._broker_ok:
                logger.warning("queue depth of %s not measured: %r", self.queue, exc)
            self._broker_ok = False
        else:
            self._broker_ok = True
            metrics.set_queue_depth(self.queue, depth.waiting)
            if depth.in_progress is not None:
                metrics.set_queue_in_progress(self.queue, depth.in_progress)
        if self.relay is None:
            return
        try:
            with anyio.fail_after(timeout):
                backlog = await self.relay.backlog()
        except Exception as exc:  # noqa: BLE001 - a metric never takes the process down
            if not report_failure(exc):  # the database away is logged once, by its status
                logger.warning("outbox backlog not measured: %r", exc)
        else:
            metrics.set_outbox_backlog(backlog.rows, backlog.oldest_age_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="storefront-queue-depth")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)
