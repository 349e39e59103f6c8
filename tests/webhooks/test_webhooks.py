"""Outgoing webhooks: owners subscribe endpoints; order events reach a real HTTP receiver on
loopback, signed per Standard Webhooks (verified with the reference library), retried with
the same id and bytes, never sent for a rolled-back change; 410 unsubscribes; the SSRF guard
refuses private targets by name and by address; the outgoing call is a traced child span."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from aiohttp import web
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from storefront.app import create_app
from storefront.auditlog import AuditEvent
from storefront.infra.outbound import GuardedResolver, OutboundClient, OutboundRefused
from storefront.resources import Resources
from storefront.webhooks.models import WebhookEndpoint
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1, Api, UserHandle, shop_with_staff
from tests.support.problems import assert_problem

FAST_RETRIES = {"max_retries": 4, "retry_base_delay_seconds": 0.05, "retry_max_delay_seconds": 0.2}
OPEN_OUTBOUND = {"allow_private_targets": True, "allow_http": True}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on loopback that records what it is sent."""

    statuses: list[int] = field(default_factory=list)  # answers to give first, then 204
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert len(self.received) >= count, self.received
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def open_app(database_url: str) -> AsyncIterator[tuple[FastAPI, InMemorySpanExporter]]:
    """The app with loopback receivers allowed, fast job retries and tracing to memory."""
    settings = make_settings(
        database_url,
        outbound=OPEN_OUTBOUND,
        jobs=FAST_RETRIES,
        observability={"tracing_enabled": True, "trace_sample_ratio": 1.0},
    )
    app = create_app(settings)
    exporter = InMemorySpanExporter()
    app.state.observability.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app, exporter
        await _empty_tables(app.state.resources)


@pytest.fixture
async def open_api(open_app: tuple[FastAPI, InMemorySpanExporter]) -> AsyncIterator[Api]:
    transport = httpx2.ASGITransport(app=open_app[0], raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client)


def hooks_url(shop: dict[str, Any]) -> str:
    return f"{V1}/shops/{shop['id']}/webhooks"


async def subscribe(
    api: Api, owner: UserHandle, shop: dict[str, Any], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    r = await api.client.post(
        hooks_url(shop),
        json={"url": url, "events": events or ["order.placed", "order.cancelled"]},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def endpoint_rows(resources: Resources) -> list[WebhookEndpoint]:
    async with resources.sessionmaker() as session:
        return list((await session.execute(select(WebhookEndpoint))).scalars())


def is_http_client(span: ReadableSpan) -> bool:
    """The aiohttp instrumentation's span: CLIENT, named after the method."""
    return span.kind is SpanKind.CLIENT and span.name == "POST"


def deliveries(event: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_webhook_deliveries_total", {"event": event, "outcome": outcome}
    )
    return value or 0.0


# --- managing subscriptions ----------------------------------------------------------------


async def test_owner_subscribes_lists_and_deletes_and_the_secret_is_shown_once(
    api: Api, resources: Resources
) -> None:
    owner, staff, shop = await shop_with_staff(api)
    r = await api.client.post(
        hooks_url(shop),
        json={"url": "https://hooks.example.com/storefront", "events": ["order.placed"]},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert r.headers["Location"] == f"{hooks_url(shop)}/{created['id']}"
    assert r.headers["Cache-Control"] == "no-store"
    assert created["events"] == ["order.placed"]
    assert created["is_active"] is True

    listed = await api.client.get(hooks_url(shop), headers=owner.auth)
    assert listed.status_code == 200
    [item] = listed.json()
    assert item["id"] == created["id"]
    assert "secret" not in item
    # sealed at rest: the secret is not in the row
    [row] = await endpoint_rows(resources)
    assert created["secret"] not in row.secret_sealed

    for who in (staff, await api.user()):
        assert (await api.client.get(hooks_url(shop), headers=who.auth)).status_code == 403
        denied = await api.client.delete(f"{hooks_url(shop)}/{created['id']}", headers=who.auth)
        assert denied.status_code == 403
    assert (await api.client.get(hooks_url(shop))).status_code == 401

    gone = await api.client.delete(f"{hooks_url(shop)}/{created['id']}", headers=owner.auth)
    assert gone.status_code == 204
    async with resources.sessionmaker() as session:
        trail = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.shop_id)
                .where(AuditEvent.object_id == created["id"])
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert [row.action for row in trail] == ["webhook.created", "webhook.deleted"]
    assert {str(row.actor_id) for row in trail} == {owner.id}
    assert {str(row.shop_id) for row in trail} == {shop["id"]}
    again = await api.client.delete(f"{hooks_url(shop)}/{created['id']}", headers=owner.auth)
    assert_problem(again, 404)
    assert await endpoint_rows(resources) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/plain-http",  # https only by default
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/hooks",
        "https://[::ffff:192.168.1.1]/hooks",
        "https://localhost/hooks",
        "https://user:pw@hooks.example.com/",
        "ftp://hooks.example.com/",
    ],
)
async def test_unsafe_urls_are_refused_and_nothing_is_created(
    api: Api, resources: Resources, url: str
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    r = await api.client.post(
        hooks_url(shop), json={"url": url, "events": ["order.placed"]}, headers=owner.auth
    )
    assert_problem(r, 422)
    assert r.json()["type"].endswith("webhook-url-refused")
    assert await endpoint_rows(resources) == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/", "events": ["order.shipped"]},
        {"url": "https://hooks.example.com/", "events": []},
        {"url": "https://hooks.example.com/"},
        {"url": "https://hooks.example.com/", "events": ["order.placed"], "secret": "mine"},
    ],
)
async def test_malformed_subscriptions_are_422(
    api: Api, resources: Resources, body: dict[str, Any]
) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    assert_problem(await api.client.post(hooks_url(shop), json=body, headers=owner.auth), 422)
    assert await endpoint_rows(resources) == []


# --- delivery --------------------------------------------------------------------------------


async def test_order_events_are_delivered_signed_and_without_personal_data(
    open_api: Api, receiver: Receiver
) -> None:
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, price_cents=1250, stock=5)
    hook = await subscribe(api, owner, shop, receiver.url)
    before = deliveries("order.placed", "delivered")

    order = await api.order(customer, shop, (product, 2))
    [placed] = await receiver.wait_for(1)
    payload = Webhook(hook["secret"]).verify(placed.body, placed.headers)
    assert payload["type"] == "order.placed"
    data = payload["data"]
    assert data["id"] == order["id"]
    assert data["total_cents"] == 2500
    assert data["lines"][0]["quantity"] == 2
    text = placed.body.decode()
    for value in order["shipping_address"].values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in text  # no address, no name, no phone
    assert customer.id not in text
    assert placed.headers["webhook-id"].startswith("msg_")
    assert placed.headers["Content-Type"] == "application/json"
    assert placed.headers["User-Agent"].startswith("Storefront/")
    for _ in range(100):  # counted once the receiver's answer is back in the job
        if deliveries("order.placed", "delivered") > before:
            break
        await asyncio.sleep(0.02)
    assert deliveries("order.placed", "delivered") == before + 1

    r = await api.client.post(
        f"{V1}/shops/{shop['id']}/orders/{order['id']}/cancel", headers=customer.auth
    )
    assert r.status_code == 200
    _, cancelled = await receiver.wait_for(2)
    payload = Webhook(hook["secret"]).verify(cancelled.body, cancelled.headers)
    assert payload["type"] == "order.cancelled"
    assert payload["data"]["status"] == "cancelled"
    # a forged or altered message does not verify
    with pytest.raises(Exception, match="signature"):
        Webhook(hook["secret"]).verify(
            cancelled.body.replace(b"cancelled", b"paid"), cancelled.headers
        )


async def test_only_subscribed_events_and_active_endpoints_receive(
    open_api: Api, receiver: Receiver
) -> None:
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop, other_shop = await api.shop(owner), await api.shop(owner)
    product = await api.product(owner, shop, stock=5)
    other_product = await api.product(owner, other_shop, stock=5)
    await subscribe(api, owner, shop, receiver.url, ["order.cancelled"])
    await api.order(customer, shop, (product, 1))  # placed: not subscribed
    await api.order(customer, other_shop, (other_product, 1))  # another shop
    await asyncio.sleep(0.5)
    assert receiver.received == []


async def test_a_failing_receiver_gets_the_same_message_again_until_it_accepts(
    open_api: Api, receiver: Receiver
) -> None:
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=5)
    hook = await subscribe(api, owner, shop, receiver.url, ["order.placed"])
    receiver.statuses = [500, 503]
    await api.order(customer, shop, (product, 1))
    attempts = await receiver.wait_for(3)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    for attempt in attempts:
        Webhook(hook["secret"]).verify(attempt.body, attempt.headers)
    await asyncio.sleep(0.4)
    assert len(receiver.received) == 3  # accepted: no more attempts


async def test_410_gone_unsubscribes_the_endpoint(open_api: Api, receiver: Receiver) -> None:
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=5)
    await subscribe(api, owner, shop, receiver.url, ["order.placed"])
    receiver.statuses = [410]
    await api.order(customer, shop, (product, 1))
    await receiver.wait_for(1)
    for _ in range(100):
        [hook] = (await api.client.get(hooks_url(shop), headers=owner.auth)).json()
        if not hook["is_active"]:
            break
        await asyncio.sleep(0.05)
    assert hook["is_active"] is False
    assert "410" in hook["disabled_reason"]
    await api.order(customer, shop, (product, 1))
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 1


async def test_a_rolled_back_order_sends_nothing(open_api: Api, receiver: Receiver) -> None:
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=1)
    await subscribe(api, owner, shop, receiver.url, ["order.placed"])
    r = await api.place_order(customer, shop, (product, 5))  # not enough stock: 409
    assert_problem(r, 409)
    await asyncio.sleep(0.5)
    assert receiver.received == []


async def test_the_outgoing_call_is_a_client_span_in_the_requests_trace(
    open_app: tuple[FastAPI, InMemorySpanExporter], open_api: Api, receiver: Receiver
) -> None:
    _, exporter = open_app
    api = open_api
    owner, customer = await api.user(), await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, stock=5)
    await subscribe(api, owner, shop, receiver.url, ["order.placed"])
    exporter.clear()
    await api.order(customer, shop, (product, 1))
    [delivered] = await receiver.wait_for(1)
    for _ in range(100):
        if any(is_http_client(s) for s in exporter.get_finished_spans()):
            break
        await asyncio.sleep(0.05)
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    [job] = [s for s in spans if s.name == "job webhooks.deliver"]
    [http] = [s for s in spans if is_http_client(s)]
    assert server.context is not None
    assert job.context is not None
    assert http.context is not None
    assert job.context.trace_id == server.context.trace_id
    assert http.parent is not None
    assert http.parent.span_id == job.context.span_id
    # the receiver was told the trace (W3C traceparent) of the call
    trace_id = format(server.context.trace_id, "032x")
    assert trace_id in delivered.headers["traceparent"]


# --- the SSRF guard on resolved addresses -----------------------------------------------------


def own_name() -> str:
    """This machine's host name, which resolves to a non-public address here."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    if any(ipaddress.ip_address(a).is_global for a in addresses):
        pytest.skip(f"{name} resolves to a public address here: {addresses}")
    return name


async def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    resolver = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(OutboundRefused):
            await resolver.resolve("localhost", 443, socket.AF_INET)
    finally:
        await resolver.close()


async def test_the_client_refuses_a_private_target_reached_through_dns(
    receiver: Receiver,
) -> None:
    client = OutboundClient(
        user_agent="test",
        timeout_seconds=5,
        connect_timeout_seconds=2,
        max_connections=4,
        max_connections_per_host=2,
        allow_private_targets=False,
        allow_http=True,
    )
    # the machine's own name passes the name check (it is not "localhost" or a literal) but
    # resolves to loopback or a private address: the resolver, which sees it, refuses it
    url = receiver.url.replace("127.0.0.1", own_name())
    try:
        with pytest.raises(OutboundRefused):
            await client.post(url, body=b"{}", headers={})
    finally:
        await client.aclose()
    assert receiver.received == []


async def test_refused_targets_are_dropped_not_retried(
    database_url: str, receiver: Receiver
) -> None:
    """An endpoint accepted earlier whose name now points inside: dropped and counted."""
    settings = make_settings(database_url, outbound={"allow_http": True}, jobs=FAST_RETRIES)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            api = Api(c)
            owner, customer = await api.user(), await api.user()
            shop = await api.shop(owner)
            product = await api.product(owner, shop, stock=5)
            await subscribe(api, owner, shop, "http://hooks.example.com/x", ["order.placed"])
            async with resources.sessionmaker() as session, session.begin():
                row = (await session.execute(select(WebhookEndpoint))).scalar_one()
                row.url = receiver.url.replace("127.0.0.1", own_name())
            before = deliveries("order.placed", "refused")
            await api.order(customer, shop, (product, 1))
            for _ in range(100):
                if deliveries("order.placed", "refused") > before:
                    break
                await asyncio.sleep(0.05)
            assert deliveries("order.placed", "refused") == before + 1
            await asyncio.sleep(0.3)
            assert deliveries("order.placed", "refused") == before + 1  # not retried
        await _empty_tables(resources)
    assert receiver.received == []
    assert uuid.UUID(shop["id"])
