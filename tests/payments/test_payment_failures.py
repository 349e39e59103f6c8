"""The provider charged but the answer never came back (a proxy cuts it), and the provider's
webhooks: the payment stays ``processing`` (never charged again), then reconciliation or a
signed webhook settles it; forged or stale webhooks are refused, a replayed one changes
nothing. Against the real emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from storefront.kit.db import utcnow
from storefront.payments.models import Payment
from storefront.payments.tasks import reconcile
from storefront.resources import Resources
from storefront.settings import Settings
from tests.conftest import hardened_overrides, make_settings
from tests.payments.conftest import World
from tests.support.apps import running_app
from tests.support.factories import Api, shop_with_staff
from tests.support.orders import order_status_in_db, set_order_status
from tests.support.payments import pay, payments_in_db, processed_events, provider_event, signed
from tests.support.problems import assert_problem
from tests.support.servers import LocalStripe, ResponseCuttingProxy, free_port

WEBHOOK = "/api/v1/webhooks/stripe"


@dataclass
class Cut:
    """An app whose provider calls go through ``proxy`` (answers cut on demand)."""

    api: Api
    resources: Resources
    proxy: ResponseCuttingProxy


@pytest.fixture
async def cut(database_url: str, backend: str, localstripe: LocalStripe) -> AsyncIterator[Cut]:
    proxy = ResponseCuttingProxy("127.0.0.1", localstripe.port)
    async with proxy:
        extra = hardened_overrides() if backend == "postgres" else {}
        settings: Settings = make_settings(
            database_url,
            payments=localstripe.settings(
                f"http://127.0.0.1:{proxy.port}", timeout_seconds=10, reconcile_after_seconds=30
            ),
            **extra,
        )
        async with running_app(settings) as app, _client(app) as client:
            yield Cut(Api(client, app.state.resources), app.state.resources, proxy)


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _world(api: Api) -> World:
    owner, staff, shop = await shop_with_staff(api)
    product = await api.product(staff, shop, price_cents=990, stock=5, currency="USD")
    customer = await api.user()
    order = await api.order(customer, shop, (product, 1))
    return World(owner, staff, shop, customer, order, product)


async def _charged_but_unanswered(cut: Cut, localstripe: LocalStripe) -> World:
    """An order the provider charged while its answer was cut."""
    world = await _world(cut.api)
    cut.proxy.cut_responses = True
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    cut.proxy.cut_responses = False
    assert r.status_code == 504, r.text
    assert r.json()["type"].endswith("/payment-outcome-unknown")
    [payment] = await payments_in_db(cut.resources, world.order["id"])
    assert payment.status.value == "processing"
    assert payment.provider_reference is None  # the answer never came
    assert str(payment.id) == r.json()["payment_id"]
    [intent] = localstripe.payment_intents(order_id=world.order["id"])
    assert intent["status"] == "succeeded"  # ... but the provider charged
    assert await order_status_in_db(cut.resources, world.order["id"]) == "pending"
    return world


async def test_a_lost_answer_is_settled_by_reconciliation_never_charged_twice(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _charged_but_unanswered(cut, localstripe)
    # paying again meanwhile (another key) waits for the outcome: no second charge
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/payment-in-progress")
    assert int(r.headers["retry-after"]) >= 1
    # too young for reconciliation: left alone
    assert await reconcile(cut.resources) == 0
    # later (an injected clock: past the age and the lease), the job finds the charge by our
    # payment id in its metadata and settles it
    later = utcnow() + timedelta(minutes=5)
    assert await reconcile(cut.resources, now=later) == 1
    [settled] = await payments_in_db(cut.resources, world.order["id"])
    assert settled.status.value == "succeeded"
    [intent] = localstripe.payment_intents(order_id=world.order["id"])
    assert settled.provider_reference == intent["id"]
    assert await order_status_in_db(cut.resources, world.order["id"]) == "paid"
    assert await reconcile(cut.resources, now=later) == 0  # nothing left
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 409
    assert r.json()["current_status"] == "paid"
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1


async def test_a_payment_that_never_reached_the_provider_is_written_off(
    cut: Cut, localstripe: LocalStripe
) -> None:
    """The proxy refuses connections: the charge never left (no connection ever opened), so
    the payment is failed at once (``not_sent``, a 503 with Retry-After), nothing was
    charged, and the order can be paid again straight away (no lease to wait out)."""
    world = await _world(cut.api)
    await cut.proxy.down()
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    await cut.proxy.up()
    problem = assert_problem(r, 503)
    assert problem["type"].endswith("/dependency-unavailable")
    assert int(r.headers["retry-after"]) >= 1
    assert localstripe.payment_intents(order_id=world.order["id"]) == []
    [failed] = await payments_in_db(cut.resources, world.order["id"])
    assert failed.status.value == "failed"
    assert failed.failure_code == "not_sent"
    assert await order_status_in_db(cut.resources, world.order["id"]) == "pending"
    later = utcnow() + timedelta(minutes=5)
    assert await reconcile(cut.resources, now=later) == 0  # nothing left to settle
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1


async def test_a_signed_webhook_settles_the_lost_answer_and_a_replay_is_a_no_op(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _charged_but_unanswered(cut, localstripe)
    [intent] = localstripe.payment_intents(order_id=world.order["id"])
    event = provider_event("payment_intent.succeeded", intent)
    body, headers = signed(event, localstripe.WEBHOOK_SECRET)
    r = await cut.api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "replayed": False}
    [settled] = await payments_in_db(cut.resources, world.order["id"])
    assert settled.status.value == "succeeded"
    assert await order_status_in_db(cut.resources, world.order["id"]) == "paid"
    assert await processed_events(cut.resources) == 1

    # the same event again (the provider retries): nothing happens
    before = settled.updated_at
    r = await cut.api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "replayed": True}
    [again] = await payments_in_db(cut.resources, world.order["id"])
    assert again.updated_at == before
    assert await processed_events(cut.resources) == 1
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1


async def test_forged_altered_stale_or_unsigned_webhooks_are_refused(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _charged_but_unanswered(cut, localstripe)
    [intent] = localstripe.payment_intents(order_id=world.order["id"])
    event = provider_event("payment_intent.succeeded", intent)
    forged_body, forged = signed(event, "whsec_not_ours")
    good_body, good = signed(event, localstripe.WEBHOOK_SECRET)
    stale_body, stale = signed(event, localstripe.WEBHOOK_SECRET, at=int(time.time()) - 3600)
    attempts = [
        (forged_body, forged),
        (good_body.replace(b"succeeded", b"succeedes"), good),  # altered after signing
        (stale_body, stale),
        (good_body, {"Content-Type": "application/json"}),  # no signature
    ]
    for body, headers in attempts:
        r = await cut.api.client.post(WEBHOOK, content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/webhook-signature-invalid")
    [still] = await payments_in_db(cut.resources, world.order["id"])
    assert still.status.value == "processing"
    assert await order_status_in_db(cut.resources, world.order["id"]) == "pending"
    assert await processed_events(cut.resources) == 0


async def test_a_charge_for_an_order_that_expired_meanwhile_is_refunded(
    cut: Cut, localstripe: LocalStripe
) -> None:
    """The order expired while the provider was charging: the money goes back."""
    world = await _charged_but_unanswered(cut, localstripe)
    await set_order_status(cut.resources, world.order["id"], "expired")
    assert await reconcile(cut.resources, now=utcnow() + timedelta(minutes=5)) == 1
    [refunded] = await payments_in_db(cut.resources, world.order["id"])
    assert refunded.status.value == "refunded"
    [intent] = localstripe.payment_intents(order_id=world.order["id"])
    assert intent["latest_charge"]["refunded"] is True
    assert await order_status_in_db(cut.resources, world.order["id"]) == "expired"


async def _lease_runs_out(resources: Resources, order_id: str) -> None:
    """The lease of the order's processing payment ends now (as if its time had passed)."""
    async with resources.sessionmaker() as session:
        await session.execute(
            update(Payment)
            .where(Payment.order_id == uuid.UUID(order_id))
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


async def test_paying_again_after_a_lost_answer_finds_the_charge_instead_of_charging(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _charged_but_unanswered(cut, localstripe)
    [lost] = await payments_in_db(cut.resources, world.order["id"])
    await _lease_runs_out(cut.resources, world.order["id"])
    # the customer tries again (a new key): the earlier charge is found by its metadata
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    assert r.json()["id"] == str(lost.id)
    assert r.json()["status"] == "succeeded"
    assert await order_status_in_db(cut.resources, world.order["id"]) == "paid"
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1


async def test_paying_again_after_a_call_that_never_arrived_charges_once(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _world(cut.api)
    # the proxy takes the connection (the request is sent) but has nothing behind it: the
    # call is lost on the way, and we cannot know it was not charged
    target = cut.proxy.target
    cut.proxy.target = ("127.0.0.1", free_port())
    assert (await pay(cut.api, world.customer, world.shop, world.order["id"])).status_code == 504
    cut.proxy.target = target
    await _lease_runs_out(cut.resources, world.order["id"])
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    statuses = [p.status.value for p in await payments_in_db(cut.resources, world.order["id"])]
    assert statuses == ["failed", "succeeded"]
    assert len(localstripe.payment_intents(order_id=world.order["id"])) == 1


async def test_a_refund_made_at_the_provider_is_learnt_from_its_webhook(
    cut: Cut, localstripe: LocalStripe
) -> None:
    world = await _world(cut.api)
    r = await pay(cut.api, world.customer, world.shop, world.order["id"])
    assert r.status_code == 201, r.text
    reference = r.json()["provider_reference"]
    refund = httpx2.post(
        f"{localstripe.url}/v1/refunds",
        data={"payment_intent": reference},
        auth=(localstripe.SECRET_KEY, ""),
        timeout=10,
    )
    assert refund.status_code == 200, refund.text
    event = provider_event(
        "charge.refunded",
        {"id": refund.json()["charge"], "object": "charge", "payment_intent": reference},
    )
    body, headers = signed(event, localstripe.WEBHOOK_SECRET)
    r = await cut.api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 200, r.text
    [payment] = await payments_in_db(cut.resources, world.order["id"])
    assert payment.status.value == "refunded"
