"""An AMQP URL naming several nodes (decision 0177): the connection goes to the first node that
answers and moves to the next when its node dies. The nodes are loopback proxies to the real
RabbitMQ, each of which a test can take down (connections cut, new ones refused)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from aio_pika import RobustConnection
from taskiq import BrokerMessage
from taskiq_aio_pika import AioPikaBroker, QueueType

from storefront.events.envelope import CloudEvent, EventType
from storefront.events.rabbit import build_broker
from storefront.infra.amqp import _CONNECT_TRANSPORT, ClusterConnection, cluster_options
from storefront.jobs.queue import create_broker
from tests.support.servers import TcpProxy, free_port

pytestmark = pytest.mark.rabbitmq


def node_list(rabbitmq_url: str, *ports: int) -> str:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    # a quick reconnection for the test (aio-pika waits 5 s by default)
    return rabbitmq_url.replace("127.0.0.1:5672", hosts).rstrip("/") + "/?reconnect_interval=0.2"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except (ConnectionError, aio_pika.exceptions.AMQPError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def nodes(rabbitmq_url: str) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    async with TcpProxy("127.0.0.1", 5672) as a, TcpProxy("127.0.0.1", 5672) as b:
        yield a, b


def test_the_pinned_aio_pika_connects_through_the_overridden_method() -> None:
    # the override takes effect only while aio-pika makes each attempt in this method
    assert hasattr(RobustConnection, _CONNECT_TRANSPORT)
    assert _CONNECT_TRANSPORT in vars(ClusterConnection)


def test_a_one_node_url_is_left_to_aio_pika() -> None:
    assert cluster_options("amqp://guest:guest@127.0.0.1:5672/") == (
        "amqp://guest:guest@127.0.0.1:5672/",
        {},
    )


async def test_connects_to_the_first_node_that_answers(
    rabbitmq_url: str, nodes: tuple[TcpProxy, TcpProxy]
) -> None:
    _a, b = nodes
    url, options = cluster_options(node_list(rabbitmq_url, free_port(), b.port))
    connection = await aio_pika.connect_robust(url, **options)
    try:
        assert isinstance(connection, ClusterConnection)
        assert connection.url.port == b.port
        channel = await connection.channel()
        await channel.close()
    finally:
        await connection.close()


async def test_moves_to_the_next_node_when_its_node_dies(
    rabbitmq_url: str, nodes: tuple[TcpProxy, TcpProxy]
) -> None:
    a, b = nodes
    url, options = cluster_options(node_list(rabbitmq_url, a.port, b.port))
    connection = await aio_pika.connect_robust(url, **options)
    queue_name = f"sf-test-cluster-{uuid.uuid4().hex[:10]}"
    try:
        assert connection.url.port == a.port
        channel = await connection.channel()
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await a.down()  # node A dies: the connection moves to B, the channel is restored

        async def published() -> bool:
            await channel.default_exchange.publish(
                aio_pika.Message(b"after"), routing_key=queue_name
            )
            return True

        await eventually(published)
        assert connection.url.port == b.port
        got = await queue.get(timeout=5, fail=False)
        assert got is not None
        assert got.body == b"after"
        await got.ack()
    finally:
        await connection.close()
        cleanup = await aio_pika.connect(rabbitmq_url)
        async with cleanup:
            await (await cleanup.channel()).queue_delete(queue_name)


async def test_the_job_broker_keeps_delivering_across_a_node_loss(
    rabbitmq_url: str, nodes: tuple[TcpProxy, TcpProxy]
) -> None:
    a, b = nodes
    queue = f"sf-test-{uuid.uuid4().hex[:12]}"
    broker = create_broker(
        node_list(rabbitmq_url, a.port, b.port), queue=queue, concurrency=2, max_delay=1
    )
    assert isinstance(broker, AioPikaBroker)
    assert {q.type for q in broker._task_queues} == {QueueType.QUORUM}
    broker.is_worker_process = True
    received: list[bytes] = []

    async def consume() -> None:
        async for delivered in broker.listen():
            received.append(delivered.data)
            result = delivered.ack()
            if isinstance(result, Awaitable):
                await result

    def message(body: bytes) -> BrokerMessage:
        return BrokerMessage(task_id=uuid.uuid4().hex, task_name="t", message=body, labels={})

    await broker.startup()
    consumer = asyncio.create_task(consume())
    try:
        await broker.kick(message(b"before"))
        await eventually(lambda: _true(b"before" in received))
        await a.down()

        async def kicked() -> bool:
            await broker.kick(message(b"after"))
            return True

        await eventually(kicked)
        await eventually(lambda: _true(b"after" in received))
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await broker.shutdown()
        cleanup = await aio_pika.connect(rabbitmq_url)
        async with cleanup:
            channel = await cleanup.channel()
            for name in (queue, f"{queue}.dead_letter"):
                await channel.queue_delete(name)
            await channel.exchange_delete(queue)


async def test_the_events_broker_publishes_across_a_node_loss(
    rabbitmq_url: str, nodes: tuple[TcpProxy, TcpProxy]
) -> None:
    a, b = nodes
    exchange = f"sf-test-events-{uuid.uuid4().hex[:10]}"
    events = build_broker(node_list(rabbitmq_url, a.port, b.port), exchange=exchange, consumers=())
    await events.broker.connect()
    try:
        await events.declare()
        event = CloudEvent.model_validate(
            {
                "id": str(uuid.uuid4()),
                "source": "/test",
                "type": EventType.order_placed.value,
                "time": "2026-01-01T00:00:00Z",
                "subject": "orders/test",
                "data": {},
            }
        )
        await events.publish(event, confirm_seconds=5)
        await a.down()

        async def published() -> bool:
            await events.publish(event, confirm_seconds=2)
            return True

        await eventually(published)
    finally:
        await events.broker.stop()
        cleanup = await aio_pika.connect(rabbitmq_url)
        async with cleanup:
            channel = await cleanup.channel()
            await channel.queue_delete(f"{exchange}.dead-letter")
            for name in (exchange, f"{exchange}.dlx"):
                await channel.exchange_delete(name)


async def _true(value: bool) -> bool:
    return value


async def test_the_broker_check_passes_while_any_node_answers(rabbitmq_url: str) -> None:
    from storefront.web.health import check_broker

    dead, other_dead = free_port(), free_port()
    some_up = node_list(rabbitmq_url, dead, 5672)
    assert (await check_broker(some_up, 2.0))["status"] == "up"
    all_down = node_list(rabbitmq_url, dead, other_dead)
    assert (await check_broker(all_down, 2.0))["status"] == "down"
