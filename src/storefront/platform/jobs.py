"""Background jobs on taskiq, deferred through a transactional outbox.

A domain declares a job with :func:`job` (a name and an ``async def f(runtime, **kwargs)``)
and asks for it with ``JobQueue.defer(session, the_job, **kwargs)``: that writes an outbox
row in the session's own transaction (``platform.outbox``), so the job exists exactly when the
work committed and never when it rolled back. Right after the commit this process sends it to
the broker and the row is deleted; if the broker was down, or the process died first, the
outbox relay (a loop in the API's lifespan and in ``storefront worker``) sends it later, with
back-off. Delivery is at least once: every job must be idempotent.

The broker comes from ``STOREFRONT_BROKER_URL``:

- unset: taskiq's ``InMemoryBroker`` runs jobs as tasks of this process's event loop,
  still asynchronously and still only after the commit (the embedded default; a job handed
  to it is gone if the process dies before it ran: there is no durable queue);
- ``redis://``: ``taskiq_redis.RedisStreamBroker`` (a Redis stream with a consumer group:
  acknowledged after the job ran, reclaimed from a dead worker);
- ``amqp://``: ``taskiq_aio_pika.AioPikaBroker`` on RabbitMQ (durable quorum queue,
  persistent messages, acknowledged after the job ran).

Failures are retried with exponential back-off and jitter (:class:`BackoffRetryMiddleware`).
The delay is waited inside the worker *before* the failed message is acknowledged, so a
worker that dies during the wait leaves the message to be delivered again: nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskiq import AsyncBroker, InMemoryBroker, SmartRetryMiddleware, TaskiqMessage
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from storefront.platform.db import after_commit, create_engine, create_sessionmaker
from storefront.platform.observability.jobs import (
    JobTelemetryMiddleware,
    carried_context,
    current_carrier,
)
from storefront.platform.outbox import OutboxMessage, OutboxRelay, UnknownJob, new_entry
from storefront.platform.queue_depth import QueueDepthSampler

if TYPE_CHECKING:
    from storefront.platform.runtime import Runtime

logger = logging.getLogger("storefront.jobs")

JobFunc = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """A declared job: ``func(runtime, **kwargs)``; kwargs must be JSON-serializable."""

    name: str
    func: JobFunc


_REGISTRY: dict[str, Job] = {}


def job(name: str) -> Callable[[JobFunc], Job]:
    """Declare a job under a stable name (the name travels in messages: never rename).

    Jobs are delivered at least once: the outbox resends a job whose deletion was lost, a
    broker redelivers the message of a worker that died mid-job, and a failure is retried.
    So a job must be idempotent: running it twice for the same arguments must leave the same
    result as running it once (check before acting, make writes conditional, give external
    effects a stable identity). Say in the job's docstring how it is.
    """

    def register(func: JobFunc) -> Job:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job {name!r} is declared twice")
        declared = Job(name, func)
        _REGISTRY[name] = declared
        return declared

    return register


def registered_jobs() -> Mapping[str, Job]:
    return dict(_REGISTRY)


class BackoffRetryMiddleware(SmartRetryMiddleware):
    """Retry a failed job up to ``max_retries`` times, waiting ``base * 2^(n-1)`` seconds
    (capped, with jitter) before the n-th retry."""

    def __init__(self, *, max_retries: int, base_delay: float, max_delay: float) -> None:
        # SmartRetryMiddleware counts attempts: "retry while attempts < count"
        super().__init__(
            default_retry_count=max_retries + 1,
            default_retry_label=True,
            default_delay=base_delay,
            max_delay_exponent=max_delay,
        )
        self.base_delay = base_delay
        self.max_delay = max_delay

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        delay = min(self.base_delay * 2.0 ** max(retries - 1, 0), self.max_delay)
        # "equal jitter": half fixed, half random, so retries of many jobs spread out
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  # nosec B311 - not cryptographic

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        # Wait here, before the failed delivery is acknowledged: the brokers used here have
        # no delayed delivery of their own, and a crash during the wait redelivers it.
        await anyio.sleep(delay)
        await kicker.kiq(*message.args, **message.kwargs)


def create_broker(
    url: str | None, *, queue: str, concurrency: int, max_delay: float
) -> AsyncBroker:
    """The broker for ``url`` (None: in-process). Client libraries load only when used."""
    if url is None:
        return InMemoryBroker(max_async_tasks=concurrency)
    scheme = urlsplit(url).scheme
    if scheme in {"redis", "rediss", "unix"}:
        from taskiq_redis import RedisStreamBroker

        return RedisStreamBroker(
            url,
            queue_name=queue,
            consumer_group_name=queue,
            consumer_id="0",  # a group created late still sees messages sent before it
            # reclaim a message from a dead worker only after any live one would be done
            idle_timeout=int((max_delay + 300) * 1000),
            xread_count=concurrency,
            protocol=2,
        )
    if scheme in {"amqp", "amqps"}:
        from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

        return AioPikaBroker(
            url,
            exchange=Exchange(name=queue),
            task_queues=[Queue(name=queue)],
            dead_letter_queue=Queue(name=f"{queue}.dead_letter"),
            qos=concurrency,
        )
    raise ValueError(
        f"STOREFRONT_BROKER_URL: unsupported scheme {scheme!r} (use redis:// or amqp://)"
    )


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """How the outbox relay and the queue-depth sampler run (``STOREFRONT_JOBS__*``)."""

    poll_seconds: float = 1.0
    lease_seconds: float = 30.0
    batch_size: int = 100
    send_timeout_seconds: float = 5.0
    depth_interval_seconds: float = 15.0  # 0: no sampling
    pool_size: int = 2  # the relay's own connections (never the requests' pool)


class JobQueue:
    """The process's broker, its registered jobs, the outbox relay and the depth sampler."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        max_retries: int,
        base_delay: float,
        max_delay: float,
        concurrency: int,
        shutdown_timeout: float,
        queue: str = "storefront.jobs",
        outbox: OutboxConfig | None = None,
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.concurrency = concurrency
        self.shutdown_timeout = shutdown_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.outbox = outbox or OutboxConfig()
        self.in_process = isinstance(broker, InMemoryBroker)
        self.enqueue_failures = 0  # fast-path sends the broker refused (the relay retries)
        self.relay: OutboxRelay | None = None
        self.sampler: QueueDepthSampler | None = None
        self._relay_engine: AsyncEngine | None = None
        self._runtime: Runtime | None = None
        self._started = False
        broker.add_middlewares(
            JobTelemetryMiddleware(),  # trace context, span and metrics per run (issue 7)
            BackoffRetryMiddleware(
                max_retries=max_retries, base_delay=base_delay, max_delay=max_delay
            ),
        )
        for declared in registered_jobs().values():
            self._register(declared)

    def _register(self, declared: Job) -> None:
        async def run(**kwargs: Any) -> None:
            if self._runtime is None:  # pragma: no cover - a job before startup()
                raise RuntimeError("job queue used before it was bound to a runtime")
            await declared.func(self._runtime, **kwargs)

        run.__name__ = declared.name.replace(".", "_")
        self.broker.register_task(run, task_name=declared.name)

    async def startup(self, runtime: Runtime, *, worker: bool = False) -> None:
        """Connect the broker (``runtime`` is what jobs receive as their first argument),
        then start the outbox relay and the queue-depth sampler."""
        self._runtime = runtime
        self.broker.is_worker_process = worker
        await self.broker.startup()
        self._started = True
        self.relay = OutboxRelay(
            create_sessionmaker(self._outbox_engine(runtime.engine)),
            self._publish,
            poll_seconds=self.outbox.poll_seconds,
            lease_seconds=self.outbox.lease_seconds,
            batch_size=self.outbox.batch_size,
            send_timeout=self.outbox.send_timeout_seconds,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
        )
        self.relay.start()
        if self.outbox.depth_interval_seconds > 0:
            self.sampler = QueueDepthSampler(
                self.broker, self.queue, self.relay, self.outbox.depth_interval_seconds
            )
            self.sampler.start()

    def _outbox_engine(self, engine: AsyncEngine) -> AsyncEngine:
        """A small pool of the relay's own: it keeps relaying when requests exhaust theirs,
        and its polling never shows up among a request's statements."""
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return engine  # a private in-memory database: only this engine sees it
        self._relay_engine = create_engine(
            url.render_as_string(hide_password=False),
            pool_size=self.outbox.pool_size,
            max_overflow=0,
            application_name="storefront-outbox",
        )
        return self._relay_engine

    async def shutdown(self) -> None:
        if self.sampler is not None:
            await self.sampler.stop()
            self.sampler = None
        if isinstance(self.broker, InMemoryBroker):
            # in-process jobs: give those already running a bounded chance to finish, then
            # cancel the rest (lost on this process: the embedded mode has no durable queue)
            with anyio.move_on_after(self.shutdown_timeout):
                await self.broker.wait_all()
            leftovers = list(getattr(self.broker, "_running_tasks", ()))
            for task in leftovers:
                task.cancel()
            if leftovers:
                logger.warning("cancelled %d in-process job(s) at shutdown", len(leftovers))
                await asyncio.gather(*leftovers, return_exceptions=True)
        if self.relay is not None:
            await self.relay.stop()  # deletes the rows sent since its last pass
        self._started = False
        await self.broker.shutdown()
        if self._relay_engine is not None:
            await self._relay_engine.dispose()
            self._relay_engine = None

    async def enqueue(self, declared: Job, /, **kwargs: Any) -> None:
        """Send a job now, outside any transaction (prefer :meth:`defer`: it is durable)."""
        task = self.broker.find_task(declared.name)
        if task is None:  # pragma: no cover - every declared job is registered
            raise LookupError(f"job {declared.name!r} is not registered")
        await task.kiq(**kwargs)

    async def _publish(self, message: OutboxMessage) -> None:
        """Hand one outbox row's job to the broker, in the trace of the request that
        deferred it; returns once the broker accepted it (Redis XADD, RabbitMQ confirm)."""
        if not self._started:
            raise RuntimeError("the job queue is not started")
        task = self.broker.find_task(message.job)
        if task is None:
            raise UnknownJob(f"job {message.job!r} is not declared in this release")
        with carried_context(message.trace_context):
            await task.kicker().with_labels(outbox_id=str(message.id)).kiq(**message.kwargs)

    def defer(self, session: AsyncSession, declared: Job, /, **kwargs: Any) -> None:
        """Write the job into ``session``'s transaction (the outbox) and send it once that
        commits; nothing is sent if it rolls back. ``kwargs`` must be JSON-serializable."""
        if self.broker.find_task(declared.name) is None:  # pragma: no cover - registered
            raise LookupError(f"job {declared.name!r} is not registered")
        kwargs = json.loads(json.dumps(kwargs))  # a TypeError here, not after the commit
        relay = self.relay
        # due at once when no relay of this process will try first (a script without the
        # lifespan); otherwise only after the fast path had its chance
        entry, message = new_entry(
            declared.name,
            kwargs,
            current_carrier(),
            due_after=relay.lease if relay is not None else timedelta(0),
        )
        session.add(entry)
        if relay is None:
            return

        async def send() -> None:
            if not sa_inspect(entry).has_identity:
                return  # its savepoint rolled back: the row, and so the job, never existed
            if not await relay.send_after_commit(message):
                self.enqueue_failures += 1

        after_commit(session, send)


def build_job_queue(
    broker_url: str | None,
    *,
    queue: str,
    max_retries: int,
    base_delay: float,
    max_delay: float,
    concurrency: int,
    shutdown_timeout: float,
    outbox: OutboxConfig | None = None,
) -> JobQueue:
    broker = create_broker(broker_url, queue=queue, concurrency=concurrency, max_delay=max_delay)
    return JobQueue(
        broker,
        max_retries=max_retries,
        base_delay=base_delay,
        max_delay=max_delay,
        concurrency=concurrency,
        shutdown_timeout=shutdown_timeout,
        queue=queue,
        outbox=outbox,
    )


async def run_worker(queue: JobQueue, runtime: Runtime, stop: asyncio.Event) -> None:
    """Consume jobs until ``stop`` is set, then finish those in flight (bounded) and return."""
    if queue.in_process:
        raise RuntimeError(
            "STOREFRONT_BROKER_URL is not set: jobs run inside the API process, "
            "there is nothing for a worker to consume"
        )
    await queue.startup(runtime, worker=True)
    try:
        with ThreadPoolExecutor(max_workers=2) as executor:
            receiver = Receiver(
                broker=queue.broker,
                executor=executor,
                run_startup=False,
                max_async_tasks=queue.concurrency,
                wait_tasks_timeout=queue.shutdown_timeout,
            )
            logger.info("worker consuming %d job type(s)", len(registered_jobs()))
            await receiver.listen(stop)
    finally:
        with anyio.CancelScope(shield=True):
            await queue.shutdown()
