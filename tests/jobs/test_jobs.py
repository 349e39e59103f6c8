"""Background jobs: the order-confirmation email reaches a real SMTP server (aiosmtpd),
in-process and through a real `storefront worker` process on Redis and on RabbitMQ; jobs are
enqueued only after the transaction commits (a rolled-back order mails nothing); a failing
SMTP server is retried with back-off, and a job gives up after its retries.

The outbox: a broker that is down when the order commits gets the job once it is back (real
Redis and RabbitMQ behind a proxy that cuts them off); a rolled-back transaction leaves no
row; two relayers on PostgreSQL send each row exactly once; a redelivered confirmation is not
mailed twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import delete, select
from taskiq import InMemoryBroker

from storefront.app import JOBS, create_app
from storefront.auth.principal import Principal
from storefront.jobs.outbox import OutboxEntry, new_entry
from storefront.jobs.queue import JobQueue, OutboxConfig, build_job_queue, job
from storefront.kit.db import session_scope, snapshot_session
from storefront.orders.models import Order
from storefront.orders.schemas import OrderIn
from storefront.orders.service import OrderService
from storefront.orders.tasks import send_order_confirmation
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import Api, UserHandle, shop_with_staff
from tests.support.mail import Inbox, SmtpServer
from tests.support.servers import TcpProxy, free_port


@dataclass
class Broker:
    url: str | None
    queue: str


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp(inbox: Inbox) -> Iterator[SmtpServer]:
    with SmtpServer(inbox) as server:
        yield server


@pytest.fixture
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    kind = getattr(request, "param", "in-process")
    if kind == "in-process":
        yield Broker(None, "unused")
    elif kind == "redis":
        prefix = request.getfixturevalue("redis_prefix")  # its keys are deleted afterwards
        yield Broker(request.getfixturevalue("redis_url"), f"{prefix}jobs")
    else:
        url = request.getfixturevalue("rabbitmq_url")
        queue = f"sf-test-{uuid.uuid4().hex[:12]}"
        yield Broker(url, queue)
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for name in (queue, f"{queue}.dead_letter"):
                await channel.queue_delete(name)
            await channel.exchange_delete(queue)


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer, broker: Broker) -> Settings:
    return make_settings(
        database_url,
        smtp=smtp.settings,
        broker_url=broker.url,
        jobs={
            "queue": broker.queue,
            "max_retries": 3,
            "retry_base_delay_seconds": 0.2,
            "shutdown_timeout_seconds": 5,
        },
    )


@dataclass
class World:
    shop: dict[str, Any]
    customer: UserHandle
    product: dict[str, Any]


async def _make_world(api: Api) -> World:
    _, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, name="Espresso beans, 1 kg", price_cents=2450)
    customer = await api.user(display_name="Grace Hopper")
    return World(shop, customer, product)


@pytest.fixture
async def world(api: Api) -> World:
    return await _make_world(api)


def _assert_confirmation(message: Any, world: World, order: dict[str, Any]) -> None:
    assert message["To"] == world.customer.email
    assert message["From"] == "Shop <orders@shop.test>"
    assert world.shop["name"] in message["Subject"]
    assert message["Message-ID"] == f"<order-{order['id']}@storefront>"
    body = message.get_content()
    assert "Hello Grace Hopper" in body
    assert order["id"] in body
    assert "2 x Espresso beans, 1 kg" in body
    assert "Total: 49.00 EUR" in body


async def test_order_confirmation_is_emailed_in_process(
    api: Api, world: World, inbox: Inbox
) -> None:
    order = await api.order(world.customer, world.shop, (world.product, 2))
    [message] = await inbox.wait_for(1)
    _assert_confirmation(message, world, order)
    await asyncio.sleep(0.3)
    assert len(inbox.messages) == 1  # exactly once


async def test_failed_delivery_is_retried_with_backoff(
    api: Api, world: World, inbox: Inbox
) -> None:
    inbox.fail_first = 2
    order = await api.order(world.customer, world.shop, (world.product, 2))
    [message] = await inbox.wait_for(1)
    _assert_confirmation(message, world, order)
    assert len(inbox.attempts) == 3
    first_gap = inbox.attempts[1] - inbox.attempts[0]
    second_gap = inbox.attempts[2] - inbox.attempts[1]
    # base 0.2 s, doubled per retry, "equal jitter" keeps at least half of each delay
    assert first_gap >= 0.1, first_gap
    assert second_gap >= 0.2, second_gap


async def test_job_gives_up_after_its_retries(api: Api, world: World, inbox: Inbox) -> None:
    inbox.fail_first = 1000
    await api.order(world.customer, world.shop, (world.product, 1))
    deadline = time.monotonic() + 15
    while len(inbox.attempts) < 4 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # longer than the next back-off would be
    assert len(inbox.attempts) == 4  # the first attempt and max_retries=3 retries
    assert inbox.messages == []


def _order_in(world: World) -> OrderIn:
    return OrderIn.model_validate(Api.order_body((world.product, 1)))


def _principal(user: UserHandle) -> Principal:
    return Principal(
        user_id=uuid.UUID(user.id), is_admin=False, auth_time=datetime.now(UTC), session_id=None
    )


@pytest.mark.parametrize("commit", [True, False])
async def test_confirmation_only_after_commit_in_process(
    resources: Resources, world: World, inbox: Inbox, commit: bool
) -> None:
    scope = session_scope(resources.sessionmaker)
    session = await anext(scope)
    service = OrderService(
        session,
        uuid.UUID(world.shop["id"]),
        cache=resources.cache,
        vault=resources.vault,
        jobs=resources.jobs,
    )
    order = await service.place(_principal(world.customer), _order_in(world))
    await asyncio.sleep(0.5)
    assert inbox.attempts == []  # placed and flushed, but not committed: nothing sent yet
    assert await _outbox(resources) == []  # the outbox row is not committed either
    if commit:
        assert await anext(scope, None) is None  # the dependency's commit
        [message] = await inbox.wait_for(1)
        assert message["Message-ID"] == f"<order-{order.id}@storefront>"
        await _eventually(lambda: _outbox_empty(resources), "the sent row is deleted")
    else:
        with pytest.raises(RuntimeError, match="later step failed"):
            await scope.athrow(RuntimeError("a later step failed"))
        await asyncio.sleep(1.0)  # several relay passes
        assert inbox.attempts == []
        assert await _outbox(resources) == []  # rolled back with the order: no row, no job


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
@pytest.mark.parametrize("commit", [True, False])
async def test_message_reaches_the_broker_only_after_commit(
    resources: Resources, world: World, broker: Broker, commit: bool
) -> None:
    assert broker.url is not None
    redis = Redis.from_url(broker.url, protocol=2)
    try:
        scope = session_scope(resources.sessionmaker)
        session = await anext(scope)
        service = OrderService(
            session,
            uuid.UUID(world.shop["id"]),
            cache=resources.cache,
            vault=resources.vault,
            jobs=resources.jobs,
        )
        await service.place(_principal(world.customer), _order_in(world))
        assert await redis.xlen(broker.queue) == 0
        if commit:
            assert await anext(scope, None) is None
            assert await redis.xlen(broker.queue) == 1  # sent before the response goes out
            await _eventually(lambda: _outbox_empty(resources), "the sent row is deleted")
        else:
            with pytest.raises(RuntimeError):
                await scope.athrow(RuntimeError("rolled back"))
            await asyncio.sleep(0.5)
            assert await redis.xlen(broker.queue) == 0
            assert await _outbox(resources) == []
    finally:
        await redis.aclose()


def _start_worker(
    settings: Settings, smtp: SmtpServer, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    assert settings.broker_url is not None
    env = {
        **os.environ,
        "STOREFRONT_ENVIRONMENT": "test",
        "STOREFRONT_DATABASE_URL": settings.database_url,
        "STOREFRONT_BROKER_URL": settings.broker_url,
        "STOREFRONT_JOBS__QUEUE": settings.jobs.queue,
        "STOREFRONT_JOBS__RETRY_BASE_DELAY_SECONDS": "0.2",
        "STOREFRONT_SMTP__HOST": "127.0.0.1",
        "STOREFRONT_SMTP__PORT": str(smtp.port),
        "STOREFRONT_SMTP__SENDER": "Shop <orders@shop.test>",
        "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT": str(metrics_port),
        "STOREFRONT_JOBS__QUEUE_DEPTH_INTERVAL_SECONDS": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "storefront.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
async def test_worker_process_delivers_the_confirmation(
    api: Api, world: World, inbox: Inbox, smtp: SmtpServer, settings: Settings, broker: Broker
) -> None:
    inbox.fail_first = 1  # the first delivery fails: the worker retries it through the broker
    metrics_port = free_port()
    worker = _start_worker(settings, smtp, metrics_port)
    try:
        order = await api.order(world.customer, world.shop, (world.product, 2))
        [message] = await inbox.wait_for(1, within=45)
        _assert_confirmation(message, world, order)
        assert len(inbox.attempts) == 2
        # the worker measures its queue and the outbox, and serves them on its own port

        async def measured_empty() -> bool:
            async with httpx2.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            return (
                samples.get(("storefront_job_queue_depth", (("queue", broker.queue),))) == 0
                and samples.get(("storefront_job_outbox_backlog", ())) == 0
            )

        await _eventually(measured_empty, "the worker's /metrics shows the queue drained")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
            pytest.fail(f"worker ignored SIGTERM:\n{output.decode(errors='replace')}")
    text = output.decode(errors="replace")
    assert worker.returncode == 0, text
    assert "worker stopped" in text, text


# --- the outbox: nothing acknowledged is lost --------------------------------------------------


async def _outbox(resources: Resources) -> list[OutboxEntry]:
    # a read-only snapshot: on SQLite it does not wait for a test's open write transaction
    async with snapshot_session(resources.sessionmaker) as session:
        return list((await session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))).all())


async def _outbox_empty(resources: Resources) -> bool:
    return await _outbox(resources) == []


async def _eventually(
    check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[Resources, Api]]:
    """The app with these settings, its lifespan and a client (tables emptied afterwards)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
                yield resources, Api(client)
        finally:
            await _empty_tables(resources)


def _fast_outbox(queue: str, **overrides: Any) -> dict[str, Any]:
    return {
        "queue": queue,
        "retry_base_delay_seconds": 0.2,
        "retry_max_delay_seconds": 1.0,
        "outbox_poll_seconds": 0.1,
        "outbox_lease_seconds": 5,
        "outbox_send_timeout_seconds": 1,
        "queue_depth_interval_seconds": 0,
        **overrides,
    }


StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def _entries(reply: object) -> StreamEntries:
    """A stream's entries as XRANGE returns them to a RESP2 client that decodes nothing."""
    return cast(StreamEntries, reply)


async def _broker_messages(broker: Broker) -> list[dict[str, Any]]:
    """Every message waiting in the test's queue, read from the real broker (taskiq JSON)."""
    assert broker.url is not None
    if broker.url.startswith("redis"):
        redis = Redis.from_url(broker.url, protocol=2)
        try:
            entries = _entries(await redis.xrange(broker.queue))
        finally:
            await redis.aclose()
        return [json.loads(fields[b"data"]) for _id, fields in entries]
    import aio_pika

    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(broker.queue, passive=True)
        found = []
        # unacknowledged, so each is read once; closing the channel puts them all back
        while (message := await queue.get(fail=False)) is not None:
            found.append(json.loads(message.body))
        return found


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
async def test_broker_down_at_commit_keeps_the_job_until_the_broker_is_back(
    database_url: str, smtp: SmtpServer, broker: Broker
) -> None:
    assert broker.url is not None
    target = urlsplit(broker.url)
    assert target.hostname is not None
    assert target.port is not None
    async with TcpProxy(target.hostname, target.port) as proxy:
        # the app reaches the broker only through the proxy; the test reads it directly
        proxied = broker.url.replace(target.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
        settings = make_settings(
            database_url, smtp=smtp.settings, broker_url=proxied, jobs=_fast_outbox(broker.queue)
        )
        async with _serving(settings) as (resources, api):
            world = await _make_world(api)
            await proxy.down()
            order = await api.order(world.customer, world.shop, (world.product, 1))  # 201

            async def tried_twice() -> bool:
                rows = await _outbox(resources)
                return len(rows) == 1 and rows[0].attempts >= 2

            await _eventually(tried_twice, "the relay retried while the broker was down")
            [row] = await _outbox(resources)
            assert row.job == "orders.send_confirmation"
            assert row.kwargs == {"shop_id": world.shop["id"], "order_id": order["id"]}
            assert row.last_error
            assert row.trace_context is not None
            assert "traceparent" in row.trace_context
            assert resources.jobs is not None
            assert resources.jobs.enqueue_failures == 1
            assert await _broker_messages(broker) == []

            await proxy.up()
            await _eventually(lambda: _outbox_empty(resources), "sent once the broker is back")
            [message] = await _broker_messages(broker)
            assert message["task_name"] == "orders.send_confirmation"
            assert message["kwargs"] == row.kwargs
            assert message["labels"]["outbox_id"] == str(row.id)
            # the job will continue the trace of the request that placed the order
            assert message["labels"]["traceparent"] == row.trace_context["traceparent"]


async def test_a_redelivered_confirmation_is_not_mailed_again(
    resources: Resources, world: World, api: Api, inbox: Inbox
) -> None:
    order = await api.order(world.customer, world.shop, (world.product, 2))
    await inbox.wait_for(1)
    assert resources.jobs is not None

    async def recorded() -> bool:
        async with resources.sessionmaker() as session:
            placed = await session.get(Order, (uuid.UUID(world.shop["id"]), uuid.UUID(order["id"])))
            return placed is not None and placed.confirmation_sent_at is not None

    await _eventually(recorded, "the order records that its confirmation went out")
    # the same job delivered again (a relay resend, a broker redelivery)
    await resources.jobs.enqueue(
        send_order_confirmation, shop_id=world.shop["id"], order_id=order["id"]
    )
    assert isinstance(resources.jobs.broker, InMemoryBroker)
    await resources.jobs.broker.wait_all()
    assert len(inbox.messages) == 1
    assert len(inbox.attempts) == 1


async def test_a_row_for_an_unknown_job_is_kept_and_does_not_block_others(
    resources: Resources, world: World, inbox: Inbox, api: Api
) -> None:
    async with resources.sessionmaker() as session, session.begin():
        stale, _ = new_entry("orders.renamed_long_ago", {}, {}, due_after=timedelta(0))
        session.add(stale)
    order = await api.order(world.customer, world.shop, (world.product, 1))
    [message] = await inbox.wait_for(1)
    assert message["Message-ID"] == f"<order-{order['id']}@storefront>"

    async def tried() -> bool:
        rows = await _outbox(resources)
        return len(rows) == 1 and rows[0].attempts >= 1

    await _eventually(tried, "the relay tried the unknown job")
    [row] = await _outbox(resources)
    assert row.id == stale.id  # kept (never dropped), with the reason
    assert row.last_error is not None
    assert "not declared" in row.last_error
    assert row.next_attempt_at > row.created_at  # backed off, not dropped


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_two_relayers_send_each_row_exactly_once(database_url: str, broker: Broker) -> None:
    assert broker.url is not None
    # the two relayers below do the work
    settings = make_settings(
        database_url,
        broker_url=broker.url,
        jobs=_fast_outbox(broker.queue, outbox_poll_seconds=300),
    )
    async with _serving(settings) as (resources, _api):
        relayers = [
            build_job_queue(
                broker.url,
                queue=broker.queue,
                max_retries=0,
                base_delay=0.2,
                max_delay=1.0,
                concurrency=1,
                shutdown_timeout=1,
                outbox=OutboxConfig(poll_seconds=300, batch_size=7, depth_interval_seconds=0),
                jobs=JOBS,
            )
            for _ in range(2)
        ]
        for relayer in relayers:
            await relayer.startup(resources)
        # the app's own relay stops first: its one pass at start-up is a task of its own, and
        # on a loaded CI machine it ran after the rows below were in and claimed a batch
        assert resources.jobs is not None
        assert resources.jobs.relay is not None
        await resources.jobs.relay.stop()
        try:
            ids = set()
            async with resources.sessionmaker() as session, session.begin():
                for _ in range(120):
                    kwargs = {"shop_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4())}
                    entry, _ = new_entry(
                        "orders.send_confirmation", kwargs, {}, due_after=timedelta(0)
                    )
                    session.add(entry)
                    ids.add(str(entry.id))

            async def drain(queue: JobQueue) -> None:
                assert queue.relay is not None
                while await queue.relay.relay_due():
                    pass

            await asyncio.gather(*(drain(relayer) for relayer in relayers))
            # none of these rows is left (a row some other code scheduled for later may be:
            # CI once saw one beside these 120, all sent, and the test failed on it)
            left = [(e.job, str(e.id)) for e in await _outbox(resources) if str(e.id) in ids]
            assert left == []
            sent = [m["labels"]["outbox_id"] for m in await _broker_messages(broker)]
            assert sorted(sent) == sorted(ids)  # every row, each exactly once
            counts = [relayer.relay.relayed for relayer in relayers if relayer.relay]
            assert sum(counts) == len(ids)
            assert all(count > 0 for count in counts), counts  # they shared the work
        finally:
            for relayer in relayers:
                await relayer.shutdown()


# --- queue depth: measured on the broker itself and in the outbox -------------------------------

_HELD: dict[str, asyncio.Event] = {}


@job("tests.wait_for_release")
async def _wait_for_release(resources: Resources, *, key: str) -> None:
    """Holds until its test releases it (idempotent: it changes nothing)."""
    await _HELD[key].wait()


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _gauge_is(name: str, value: float, **labels: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _gauge(name, **labels) == value

    return check


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
async def test_queue_depth_follows_the_jobs_waiting_in_the_broker(
    database_url: str, broker: Broker
) -> None:
    assert broker.url is not None
    settings = make_settings(
        database_url,
        broker_url=broker.url,
        jobs=_fast_outbox(broker.queue, queue_depth_interval_seconds=0.2),
    )
    depth, in_progress = "storefront_job_queue_depth", "storefront_job_queue_in_progress"
    async with _serving(settings) as (resources, _api):
        assert resources.jobs is not None
        await _eventually(_gauge_is(depth, 0, queue=broker.queue), "measured empty")
        for _ in range(3):  # no worker runs: they wait
            await resources.jobs.enqueue(
                send_order_confirmation, shop_id=str(uuid.uuid4()), order_id=str(uuid.uuid4())
            )
        await _eventually(_gauge_is(depth, 3, queue=broker.queue), "three jobs waiting")

        # a worker takes one and has not acknowledged it yet
        if broker.url.startswith("redis"):
            redis = Redis.from_url(broker.url, protocol=2)
            try:
                read = await redis.xreadgroup(
                    broker.queue, "test-worker", {broker.queue: ">"}, count=1
                )
                [(_stream, [(entry_id, _fields)])] = cast(list[tuple[bytes, StreamEntries]], read)
                await _eventually(_gauge_is(depth, 2, queue=broker.queue), "one was taken")
                await _eventually(_gauge_is(in_progress, 1, queue=broker.queue), "one in work")
                await asyncio.sleep(0.5)  # samples (and trims) ran: nothing unacknowledged goes
                assert int(await redis.xlen(broker.queue)) == 3
                await redis.xack(broker.queue, broker.queue, entry_id)
                await _eventually(_gauge_is(in_progress, 0, queue=broker.queue), "acknowledged")

                # the acknowledged entry is trimmed from the stream; the two waiting stay
                async def trimmed() -> bool:
                    return int(await redis.xlen(broker.queue)) == 2

                await _eventually(trimmed, "acknowledged entry trimmed")
                first_waiting = _entries(await redis.xrange(broker.queue, count=1))
                assert first_waiting[0][0] != entry_id
                await _eventually(_gauge_is(depth, 2, queue=broker.queue), "two still waiting")
            finally:
                await redis.aclose()
        else:
            import aio_pika

            connection = await aio_pika.connect(broker.url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(broker.queue, passive=True)
                taken = await queue.get()
                await _eventually(_gauge_is(depth, 2, queue=broker.queue), "one was taken")
                await taken.ack()
            await _eventually(_gauge_is(depth, 2, queue=broker.queue), "two still waiting")


async def test_in_process_queue_depth_counts_the_unfinished_jobs(database_url: str) -> None:
    name = f"sf-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        database_url, jobs=_fast_outbox(name, queue_depth_interval_seconds=0.2)
    )
    key = uuid.uuid4().hex
    _HELD[key] = asyncio.Event()
    try:
        async with _serving(settings) as (resources, _api):
            resources.jobs.register(_wait_for_release)  # a job of this test's own
            for _ in range(2):
                await resources.jobs.enqueue(_wait_for_release, key=key)
            await _eventually(_gauge_is("storefront_job_queue_depth", 2, queue=name), "held")
            _HELD[key].set()
            await _eventually(_gauge_is("storefront_job_queue_depth", 0, queue=name), "done")
    finally:
        _HELD.pop(key, None)


async def test_outbox_backlog_counts_rows_and_the_age_of_the_oldest(database_url: str) -> None:
    settings = make_settings(
        database_url, jobs=_fast_outbox("sf-test-backlog", queue_depth_interval_seconds=0.2)
    )
    async with _serving(settings) as (resources, _api):
        await _eventually(_gauge_is("storefront_job_outbox_backlog", 0), "measured empty")
        async with resources.sessionmaker() as session, session.begin():
            for n in range(3):  # not due for an hour: the relay leaves them be
                entry, _ = new_entry("tests.wait_for_release", {}, {}, due_after=timedelta(hours=1))
                if n == 0:  # the oldest (ids are time-ordered) waited two minutes already
                    entry.created_at -= timedelta(minutes=2)
                session.add(entry)

        async def backlog_of_three() -> bool:
            age = _gauge("storefront_job_outbox_oldest_age_seconds") or 0.0
            return _gauge("storefront_job_outbox_backlog") == 3 and age >= 120

        await _eventually(backlog_of_three, "three rows, the oldest two minutes old")
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(delete(OutboxEntry))
        await _eventually(_gauge_is("storefront_job_outbox_backlog", 0), "drained")
        assert _gauge("storefront_job_outbox_oldest_age_seconds") == 0


_WRITE_GAUGES = """
import sys
from storefront.telemetry import metrics
rows, age = int(sys.argv[1]), float(sys.argv[2])
metrics.set_queue_depth("jobs", rows)
metrics.set_outbox_backlog(rows, age)
"""
_RENDER = """
from storefront.telemetry import metrics
print(metrics.render()[0].decode())
"""


def test_queue_gauges_under_multiprocess_mode_show_the_latest_sample_once(
    tmp_path: Path,
) -> None:
    """Every process measures the same broker and outbox: /metrics must show one series with
    the most recent sample, not one per process nor their sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def python(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed scripts
            [sys.executable, "-c", *args], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    python(_WRITE_GAUGES, "5", "50")  # one process (it exits: its file stays)
    python(_WRITE_GAUGES, "7", "3")  # another, later
    samples = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(python(_RENDER))
        for s in family.samples
        if s.name.startswith(("storefront_job_queue_depth", "storefront_job_outbox"))
    ]
    assert sorted(samples) == [
        ("storefront_job_outbox_backlog", {}, 7.0),
        ("storefront_job_outbox_oldest_age_seconds", {}, 3.0),
        ("storefront_job_queue_depth", {"queue": "jobs"}, 7.0),
    ]


def test_outbox_settings_refuse_a_send_timeout_not_below_the_lease(sqlite_url: str) -> None:
    # a send still running when the lease ends could be sent a second time by another relay
    with pytest.raises(ValueError, match="outbox_send_timeout_seconds"):
        make_settings(
            sqlite_url, jobs={"outbox_lease_seconds": 5, "outbox_send_timeout_seconds": 5}
        )
    assert make_settings(sqlite_url).jobs.outbox_send_timeout_seconds < 30
