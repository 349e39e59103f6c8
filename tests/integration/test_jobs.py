"""Background jobs: the order-confirmation email reaches a real SMTP server (aiosmtpd),
in-process and through a real `storefront worker` process on Redis and on RabbitMQ; jobs are
enqueued only after the transaction commits (a rolled-back order mails nothing); a failing
SMTP server is retried with back-off, and a job gives up after its retries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from storefront.identity.deps import Principal
from storefront.orders.schemas import OrderIn
from storefront.orders.service import OrderService
from storefront.platform.db import session_scope
from storefront.platform.runtime import Runtime
from storefront.settings import Settings
from tests.conftest import make_settings
from tests.factories import Api, UserHandle, shop_with_staff
from tests.mail_support import Inbox, SmtpServer


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


@pytest.fixture
async def world(api: Api) -> World:
    _, staff, shop = await shop_with_staff(
        api,
    )
    product = await api.product(staff, shop, name="Espresso beans, 1 kg", price_cents=2450)
    customer = await api.user(display_name="Grace Hopper")
    return World(shop, customer, product)


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
    runtime: Runtime, world: World, inbox: Inbox, commit: bool
) -> None:
    scope = session_scope(runtime.sessionmaker)
    session = await anext(scope)
    service = OrderService(session, uuid.UUID(world.shop["id"]), jobs=runtime.jobs)
    order = await service.place(_principal(world.customer), _order_in(world))
    await asyncio.sleep(0.5)
    assert inbox.attempts == []  # placed and flushed, but not committed: nothing sent yet
    if commit:
        assert await anext(scope, None) is None  # the dependency's commit
        [message] = await inbox.wait_for(1)
        assert message["Message-ID"] == f"<order-{order.id}@storefront>"
    else:
        with pytest.raises(RuntimeError, match="later step failed"):
            await scope.athrow(RuntimeError("a later step failed"))
        await asyncio.sleep(1.0)
        assert inbox.attempts == []


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
@pytest.mark.parametrize("commit", [True, False])
async def test_message_reaches_the_broker_only_after_commit(
    runtime: Runtime, world: World, broker: Broker, commit: bool
) -> None:
    assert broker.url is not None
    redis = Redis.from_url(broker.url, protocol=2)
    try:
        scope = session_scope(runtime.sessionmaker)
        session = await anext(scope)
        service = OrderService(session, uuid.UUID(world.shop["id"]), jobs=runtime.jobs)
        await service.place(_principal(world.customer), _order_in(world))
        assert await redis.xlen(broker.queue) == 0
        if commit:
            assert await anext(scope, None) is None
            assert await redis.xlen(broker.queue) == 1
        else:
            with pytest.raises(RuntimeError):
                await scope.athrow(RuntimeError("rolled back"))
            assert await redis.xlen(broker.queue) == 0
    finally:
        await redis.aclose()


def _start_worker(settings: Settings, smtp: SmtpServer) -> subprocess.Popen[bytes]:
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
    worker = _start_worker(settings, smtp)
    try:
        order = await api.order(world.customer, world.shop, (world.product, 2))
        [message] = await inbox.wait_for(1, within=45)
        _assert_confirmation(message, world, order)
        assert len(inbox.attempts) == 2
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
