"""Background jobs on taskiq: enqueued only after the request's transaction commits.

A domain declares a job with :func:`job` (a name and an ``async def f(runtime, **kwargs)``)
and asks for it with ``JobQueue.defer(session, the_job, **kwargs)``: the message is sent to
the broker only once that session's transaction has committed (``platform.db.after_commit``)
and never if it rolls back.

The broker comes from ``STOREFRONT_BROKER_URL``:

- unset: taskiq's ``InMemoryBroker`` runs jobs as tasks of this process's event loop,
  still asynchronously and still only after the commit (the embedded default);
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
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import AsyncBroker, InMemoryBroker, SmartRetryMiddleware, TaskiqMessage
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from storefront.platform.db import after_commit
from storefront.platform.observability.jobs import JobTelemetryMiddleware

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
    """Declare a job under a stable name (the name travels in messages: never rename)."""

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


class JobQueue:
    """The process's broker, its registered jobs, and the after-commit enqueueing."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        max_retries: int,
        base_delay: float,
        max_delay: float,
        concurrency: int,
        shutdown_timeout: float,
    ) -> None:
        self.broker = broker
        self.concurrency = concurrency
        self.shutdown_timeout = shutdown_timeout
        self.in_process = isinstance(broker, InMemoryBroker)
        self.enqueue_failures = 0
        self._runtime: Runtime | None = None
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
        """Connect the broker; ``runtime`` is what jobs receive as their first argument."""
        self._runtime = runtime
        self.broker.is_worker_process = worker
        await self.broker.startup()

    async def shutdown(self) -> None:
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
        await self.broker.shutdown()

    async def enqueue(self, declared: Job, /, **kwargs: Any) -> None:
        """Send a job now (prefer :meth:`defer` inside a transaction)."""
        task = self.broker.find_task(declared.name)
        if task is None:  # pragma: no cover - every declared job is registered
            raise LookupError(f"job {declared.name!r} is not registered")
        await task.kiq(**kwargs)

    def defer(self, session: AsyncSession, declared: Job, /, **kwargs: Any) -> None:
        """Send the job once ``session``'s current transaction commits; never on rollback."""

        async def send() -> None:
            try:
                await self.enqueue(declared, **kwargs)
            except Exception:
                # the work itself is committed and acknowledged; losing the side effect is
                # logged and counted (a durable outbox table would close this gap)
                self.enqueue_failures += 1
                logger.exception("could not enqueue job %s after commit", declared.name)

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
) -> JobQueue:
    broker = create_broker(broker_url, queue=queue, concurrency=concurrency, max_delay=max_delay)
    return JobQueue(
        broker,
        max_retries=max_retries,
        base_delay=base_delay,
        max_delay=max_delay,
        concurrency=concurrency,
        shutdown_timeout=shutdown_timeout,
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
