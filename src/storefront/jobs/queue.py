"""Background jobs on taskiq, deferred through a transactional outbox.

A domain declares a job with :func:`job` (a name and an ``async def f(resources, **kwargs)``),
lists it in its tasks module's ``JOBS`` (the composition gives them all to the queue), and
asks for it with ``JobQueue.defer(session, the_job, **kwargs)``: that writes an outbox row in
the session's own transaction (``platform.outbox``), so the job exists exactly when the
work committed and never when it rolled back. Right after the commit this process sends it to
the broker and the row is deleted; if the broker was down, or the process died first, the
outbox relay (a loop in the API's lifespan and in ``storefront worker``) sends it later, with
back-off. Delivery is at least once: every job must be idempotent.

The broker comes from ``STOREFRONT_BROKER_URL``:

- unset: taskiq's ``InMemoryBroker`` runs jobs as tasks of this process's event loop,
  still asynchronously and still only after the commit (the embedded default; a job handed
  to it is gone if the process dies before it ran: there is no durable queue);
- ``redis://``: ``taskiq_redis.RedisStreamBroker`` (a Redis stream with a consumer group:
  acknowledged after the job ran, reclaimed from a dead worker; its listener outlives a
  Redis outage: ``platform.redis_stream``); ``redis+sentinel://h1:p1,h2:p2/service`` the same
  on the master the sentinels name (decision 0176);
- ``amqp://``: ``taskiq_aio_pika.AioPikaBroker`` on RabbitMQ (durable quorum queue,
  persistent messages, acknowledged after the job ran); ``amqp://u:p@h1:p1,h2:p2/`` names
  the nodes of a cluster, connected to in turn (decision 0177).

Failures are retried with exponential back-off and jitter (:class:`BackoffRetryMiddleware`).
The delay is waited inside the worker *before* the failed message is acknowledged, so a
worker that dies during the wait leaves the message to be delivered again: nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskiq import AsyncBroker, InMemoryBroker, SmartRetryMiddleware, TaskiqMessage
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from storefront.infra.availability import Backoff, dependency, spawn
from storefront.jobs.depth import QueueDepthSampler
from storefront.jobs.outbox import (
    OutboxMessage,
    OutboxRelay,
    UnknownJob,
    describe_error,
    new_entry,
)
from storefront.jobs.telemetry import (
    JobTelemetryMiddleware,
    carried_context,
    current_carrier,
)
from storefront.kit.db import after_commit, create_engine, create_sessionmaker


class JobContext(Protocol):
    """What every job receives as its first argument: the process's resources (the queue
    itself only needs their database engine, for the outbox relay)."""

    @property
    def engine(self) -> AsyncEngine: ...


logger = logging.getLogger("storefront.jobs")

JobFunc = Callable[..., Awaitable[None]]
BROKER_BACKOFF_CAP = 30.0  # the longest wait between two connection attempts


@dataclass(frozen=True, slots=True)
class Job:
    """A declared job: ``func(resources, **kwargs)``; kwargs must be JSON-serializable."""

    name: str
    func: JobFunc


def job(name: str) -> Callable[[JobFunc], Job]:
    """Declare a job under a stable name (the name travels in messages: never rename). A
    domain lists its declared jobs in its tasks module (``JOBS``); the composition hands them
    all to the :class:`JobQueue`, which runs only the jobs it was given.

    Jobs are delivered at least once: the outbox resends a job whose deletion was lost, a
    broker redelivers the message of a worker that died mid-job, and a failure is retried.
    So a job must be idempotent: running it twice for the same arguments must leave the same
    result as running it once (check before acting, make writes conditional, give external
    effects a stable identity). Say in the job's docstring how it is.
    """

    def declare(func: JobFunc) -> Job:
        return Job(name, func)

    return declare


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
    if scheme in {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"}:
        # taskiq-redis's broker, with a listener that outlives a Redis outage (decision 0130)
        from storefront.jobs.redis_stream import ReconnectingRedisStreamBroker

        return ReconnectingRedisStreamBroker(
            url,
            queue_name=queue,
            consumer_group_name=queue,
            consumer_id="0",  # a group created late still sees messages sent before it
            # reclaim a message from a dead worker only after any live one would be done
            idle_timeout=int((max_delay + 300) * 1000),
            xread_count=concurrency,
        )
    if scheme in {"amqp", "amqps"}:
        from taskiq_aio_pika import AioPikaBroker, Exchange, Queue, QueueType

        from storefront.infra.amqp import cluster_options

        # one line per failed connection attempt: the broker's status says it once instead
        logging.getLogger("aiormq.connection").addFilter(_drop_connect_failures)
        logging.getLogger("aio_pika.robust_connection").addFilter(_note_reconnecting)
        logging.getLogger("aiormq.connection").addFilter(_note_connection_lost)
        logging.getLogger("aio_pika.tools").addFilter(_drop_close_callback_errors)

        # one node, or the nodes of a cluster tried in turn (decision 0177); the queues are
        # quorum queues (taskiq-aio-pika's default type), replicated across the cluster
        first, options = cluster_options(url)
        return AioPikaBroker(
            first,
            exchange=Exchange(name=queue),
            task_queues=[Queue(name=queue, type=QueueType.QUORUM)],
            dead_letter_queue=Queue(name=f"{queue}.dead_letter", type=QueueType.QUORUM),
            qos=concurrency,
            **options,
        )
    raise ValueError(
        f"STOREFRONT_BROKER_URL: unsupported scheme {scheme!r} (use redis:// or amqp://)"
    )


def _drop_connect_failures(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("error when creating transport")


def _note_reconnecting(record: logging.LogRecord) -> bool:
    """aio-pika logs each attempt to reconnect a lost connection (every 5 s while the broker
    is away): the broker's status logs the outage once instead (decision 0110)."""
    if "Reconnecting after" in str(record.msg):
        dependency("broker").down("connection lost or refused; reconnecting")
        return False
    return True


_CONNECTION_LOST = (ConnectionError, asyncio.IncompleteReadError, OSError)


def _note_connection_lost(record: logging.LogRecord) -> bool:
    """A dropped broker connection makes aiormq log a warning with a traceback ("reader
    exited abnormally") and aio-pika reconnect: one status line says it instead. Any other
    reason (a malformed frame, say) keeps its warning and traceback."""
    if str(record.msg).startswith("Cancelling cause reader exited abnormally"):
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _CONNECTION_LOST):
            dependency("broker").down(f"connection lost ({type(exc).__name__}); reconnecting")
            return False
    return True


def _is_broker_loss(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError):
        return True
    try:
        from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
    except ImportError:  # pragma: no cover - aiormq comes with the AMQP broker
        return False
    return isinstance(exc, AMQPConnectionError | ChannelInvalidStateError)


def _quiet_broker_loss(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A job that finished while the broker connection was down cannot be acknowledged: the
    receiver's task dies with "Task exception was never retrieved" and a traceback. The
    message is redelivered once the connection is back (every job is idempotent), so this
    is the broker's outage, said once by its status line, not a bug."""
    exc = context.get("exception")
    if exc is not None and _is_broker_loss(exc):
        # reported when the dead task is collected, often after the connection is back: the
        # loss itself was said when the connection dropped (the filters above), so a late
        # report must not start a second outage in the log (nor end one)
        logger.debug("a job's acknowledgement was lost with the broker connection (%r)", exc)
        return
    loop.default_exception_handler(context)


def _drop_close_callback_errors(record: logging.LogRecord) -> bool:
    """... and its channels' close callbacks then fail on the dead connection, an error line
    each: noise of the same loss, which the robust connection recovers from."""
    args = record.args if isinstance(record.args, tuple) else ()
    is_close_callback = bool(args) and "_on_close" in repr(args[0])
    return not (str(record.msg).startswith("Callback %r error") and is_close_callback)


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
        jobs: Iterable[Job] = (),
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
        self._resources: JobContext | None = None
        self._started = False
        self._connector: asyncio.Task[None] | None = None
        self.jobs: dict[str, Job] = {}
        broker.add_middlewares(
            JobTelemetryMiddleware(),  # trace context, span and metrics per run
            BackoffRetryMiddleware(
                max_retries=max_retries, base_delay=base_delay, max_delay=max_delay
            ),
        )
        for declared in jobs:
            self.register(declared)

    def register(self, declared: Job) -> None:
        """Run ``declared`` in this queue (every job is named once, by the composition)."""
        existing = self.jobs.get(declared.name)
        if existing is not None:
            if existing.func is declared.func:
                return
            raise ValueError(f"job {declared.name!r} is declared twice")
        self.jobs[declared.name] = declared

        async def run(**kwargs: Any) -> None:
            if self._resources is None:  # pragma: no cover - a job before startup()
                raise RuntimeError("job queue used before it was bound to the resources")
            await declared.func(self._resources, **kwargs)

        run.__name__ = declared.name.replace(".", "_")
        self.broker.register_task(run, task_name=declared.name)

    @property
    def connected(self) -> bool:
        """Whether the broker is connected (jobs go out now, not only from the outbox)."""
        return self._started

    async def _connect(self) -> None:
        try:
            with anyio.fail_after(max(self.outbox.send_timeout_seconds, 1.0)):
                await self.broker.startup()
        except BaseException:
            await self._close_partial_connections()
            raise
        self._started = True
        for name in ("write_conn", "read_conn"):  # RabbitMQ: its connections reconnect
            callbacks = getattr(getattr(self.broker, name, None), "reconnect_callbacks", None)
            if callbacks is not None:
                callbacks.add(self._reconnected)
        dependency("broker").up()
        if self.relay is not None:
            self.relay.wake()  # what waited in the outbox goes out now

    async def _close_partial_connections(self) -> None:
        """A connect cut short (a timeout, a refused channel) may have opened the write
        connection and not the read one: close what it opened, or that robust connection
        lives on beside the next attempt's, reconnecting and logging outages of its own."""
        for name in ("read_channel", "write_channel", "read_conn", "write_conn"):
            opened = getattr(self.broker, name, None)
            if opened is None:
                continue
            setattr(self.broker, name, None)
            # it is being abandoned either way: a failure to close says nothing more
            with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
                await opened.close()

    def _reconnected(self, *_args: Any) -> None:
        dependency("broker").up()
        if self.relay is not None:
            self.relay.wake()

    async def _connect_until_up(self, stop: asyncio.Event | None = None) -> None:
        """Connect, retrying with back-off (capped, with jitter) until it works or ``stop``;
        the log says once that the broker is away and once that it is back."""
        backoff = Backoff(max(self.base_delay, 0.1), BROKER_BACKOFF_CAP)
        while not self._started:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                dependency("broker").down(describe_error(exc))
                delay = backoff.next_delay()
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    with anyio.move_on_after(delay):
                        await stop.wait()
                    if stop.is_set():
                        return

    async def startup(
        self, resources: JobContext, *, worker: bool = False, stop: asyncio.Event | None = None
    ) -> None:
        """Connect the broker (``resources`` is what jobs receive as their first argument),
        then start the outbox relay and the queue-depth sampler.

        A broker that is away does not keep the API from starting (decision 0111): deferred
        jobs wait in the outbox, a background task keeps connecting with back-off, and the
        relay sends them once it is connected. The worker, which has nothing to do without
        it, waits here for the broker (until ``stop``)."""
        self._resources = resources
        self.broker.is_worker_process = worker
        if self.in_process:
            await self.broker.startup()
            self._started = True
        elif worker:
            await self._connect_until_up(stop)
        else:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - the outbox holds the jobs meanwhile
                dependency("broker").down(describe_error(exc))
                self._connector = spawn(self._connect_until_up(), name="storefront-broker")
        self.relay = OutboxRelay(
            create_sessionmaker(self._outbox_engine(resources.engine)),
            self._publish,
            poll_seconds=self.outbox.poll_seconds,
            lease_seconds=self.outbox.lease_seconds,
            batch_size=self.outbox.batch_size,
            send_timeout=self.outbox.send_timeout_seconds,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            can_send=lambda: self._started,
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
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
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
        # bounded: closing a connection that the broker dropped and re-established could
        # wait on it for good, and the worker then ignored SIGTERM (seen in CI)
        with anyio.move_on_after(max(self.shutdown_timeout, 1.0)) as closing:
            await self.broker.shutdown()
        if closing.cancelled_caught:
            logger.warning("the broker connection did not close in time; leaving it")
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
            if not self._started:
                return  # the broker is away: the row waits for the relay (no error per job)
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
    jobs: Iterable[Job] = (),
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
        jobs=jobs,
    )


async def run_worker(queue: JobQueue, resources: JobContext, stop: asyncio.Event) -> None:
    """Consume jobs until ``stop`` is set, then finish those in flight (bounded) and return."""
    if queue.in_process:
        raise RuntimeError(
            "STOREFRONT_BROKER_URL is not set: jobs run inside the API process, "
            "there is nothing for a worker to consume"
        )
    await queue.startup(resources, worker=True, stop=stop)
    asyncio.get_running_loop().set_exception_handler(_quiet_broker_loss)
    if not queue.connected:  # stopped while waiting for the broker
        await queue.shutdown()
        return
    try:
        with ThreadPoolExecutor(max_workers=2) as executor:
            receiver = Receiver(
                broker=queue.broker,
                executor=executor,
                run_startup=False,
                max_async_tasks=queue.concurrency,
                wait_tasks_timeout=queue.shutdown_timeout,
            )
            logger.info("worker consuming %d job type(s)", len(queue.jobs))
            await receiver.listen(stop)
    finally:
        with anyio.CancelScope(shield=True):
            await queue.shutdown()
