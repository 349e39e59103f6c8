"""The guard on the outgoing calls that exist: webhook delivery (a real aiohttp receiver) and
the order-confirmation mail (a real aiosmtpd server), each behind a fault-injecting proxy.
The receiver's circuit opens after its failures, the job's retries are then refused without
a connection, and once the peer is healthy a probe closes the circuit and the message
arrives. Polled with deadlines; no timing asserts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY

from storefront.app import create_app
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import Api, shop_with_staff
from tests.support.faults import Fault, FaultProxy
from tests.support.mail import Inbox, SmtpServer
from tests.webhooks.test_webhooks import Receiver, subscribe

# job retries outlast the cool-down many times over; the circuit opens after 2 failures
JOBS = {"max_retries": 50, "retry_base_delay_seconds": 0.05, "retry_max_delay_seconds": 0.5}
COOL_DOWN = 3.0


def circuit(dependency: str) -> dict[str, Any]:
    return {"dependencies": {dependency: {"failure_threshold": 2, "cool_down_seconds": COOL_DOWN}}}


def refused(dependency: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_dependency_calls_total", {"dependency": dependency, "outcome": "open"}
    )
    return value or 0.0


async def until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    try:
        yield state
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[tuple[FastAPI, Api]]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield app, Api(c, app.state.resources)
        await _empty_tables(app.state.resources)


async def test_a_dead_webhook_receiver_opens_its_circuit_then_a_probe_delivers(
    database_url: str, receiver: Receiver
) -> None:
    port = int(receiver.url.split(":")[2].split("/")[0])
    async with FaultProxy("127.0.0.1", port) as proxy:
        settings = make_settings(
            database_url,
            outbound={"allow_private_targets": True, "allow_http": True},
            jobs=JOBS,
            resilience=circuit("webhooks"),
        )
        async with running(settings) as (app, api):
            owner, _, shop = await shop_with_staff(api)
            customer = await api.user()
            product = await api.product(owner, shop, stock=5)
            await subscribe(api, owner, shop, f"http://{proxy.address}/hooks", ["order.placed"])
            await proxy.set(Fault.RESET)
            before = refused("webhooks")
            await api.order(customer, shop, (product, 1))
            await proxy.wait_accepted(2)
            await until(lambda: refused("webhooks") > before, "no retry was refused")
            assert proxy.accepted == 2  # the refused retries never connected
            assert receiver.received == []
            breakers = app.state.resources.resilience.breakers
            assert breakers.state("webhooks", f"webhooks:127.0.0.1:{proxy.port}") == "opened"
            await proxy.set(Fault.NONE)
            [delivered] = await receiver.wait_for(1, within=30)
            assert delivered.headers["webhook-id"]
            await until(
                lambda: breakers.state("webhooks", f"webhooks:127.0.0.1:{proxy.port}") == "closed",
                "the probe did not close the circuit",
            )


async def test_a_failing_receiver_answering_5xx_opens_its_circuit(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(
        database_url,
        outbound={"allow_private_targets": True, "allow_http": True},
        jobs=JOBS,
        resilience=circuit("webhooks"),
    )
    receiver.statuses = [503, 500]
    async with running(settings) as (_, api):
        owner, _, shop = await shop_with_staff(api)
        customer = await api.user()
        product = await api.product(owner, shop, stock=5)
        await subscribe(api, owner, shop, receiver.url, ["order.placed"])
        before = refused("webhooks")
        await api.order(customer, shop, (product, 1))
        await receiver.wait_for(2)
        await until(lambda: refused("webhooks") > before, "5xx answers did not open it")
        await receiver.wait_for(3, within=30)  # the probe after the cool-down is accepted
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


async def test_an_smtp_server_that_resets_opens_the_mail_circuit_then_a_probe_mails(
    database_url: str,
) -> None:
    inbox = Inbox()
    with SmtpServer(inbox) as smtp:
        async with FaultProxy("127.0.0.1", smtp.port) as proxy:
            settings = make_settings(
                database_url,
                smtp={**smtp.settings, "port": proxy.port},
                jobs=JOBS,
                resilience=circuit("mail"),
            )
            async with running(settings) as (app, api):
                _, staff, shop = await shop_with_staff(api)
                product = await api.product(staff, shop)
                customer = await api.user()
                await proxy.set(Fault.RESET)
                before = refused("mail")
                await api.order(customer, shop, (product, 1))
                await proxy.wait_accepted(2)
                await until(lambda: refused("mail") > before, "no mail retry was refused")
                assert proxy.accepted == 2
                assert app.state.resources.resilience.breakers.state("mail") == "opened"
                await proxy.set(Fault.NONE)
                [message] = await inbox.wait_for(1, within=30)
                assert message["Message-ID"].startswith("<order-")
