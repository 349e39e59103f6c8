"""A keyed payment whose first answer was lost with its database connection (a PostgreSQL
failover): the retry with the same Idempotency-Key gets the first attempt's outcome, never a
409 caused by that attempt and never a second charge. The request's own backend is
terminated by PostgreSQL (pg_terminate_backend) just before a chosen statement, on v1 and v2,
against the real emulator (decision 0191)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from storefront.idempotency import IN_FLIGHT, IdempotencyRecord
from storefront.resources import Resources
from tests.payments.conftest import World
from tests.support.factories import Api
from tests.support.orders import order_status_in_db
from tests.support.payments import payments_in_db, payments_url
from tests.support.pg_faults import ANY, backend_killed_before
from tests.support.servers import LocalStripe

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)]
)

# the key's answer being recorded, and the settlement's first statement once the provider
# answered (the PaymentIntent's id on the payment)
COMPLETION = "UPDATE idempotency_keys SET state="
SETTLEMENT = "UPDATE payments SET provider_reference="


def _url(version: str, world: World) -> str:
    url = payments_url(world.shop, world.order["id"])
    return url if version == "v1" else url.replace("/api/v1/", "/api/v2/", 1)


async def _pay(api: Api, world: World, url: str, key: str) -> Any:
    return await api.client.post(
        url,
        json={"payment_method": "pm_card_visa"},
        headers={**world.customer.auth, "Idempotency-Key": key},
    )


async def _records(resources: Resources, key: str) -> list[IdempotencyRecord]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == key))
        return list(rows)


def _charges(localstripe: LocalStripe, world: World) -> list[dict[str, Any]]:
    return localstripe.payment_intents(order_id=world.order["id"])


async def _first_answer_lost(
    api: Api, world: World, resources: Resources, url: str, key: str, *prefixes: str
) -> None:
    with backend_killed_before(resources, *prefixes) as killed:
        r = await _pay(api, world, url, key)
    assert killed == list(prefixes)
    assert r.status_code >= 500, r.text  # the client never saw the payment


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_retry_after_the_answer_was_lost_at_completion_gets_the_payment(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe, version: str
) -> None:
    """Paid and committed; the connection died as the key's answer was recorded (the drill's
    409 invalid-transition)."""
    key, url = str(uuid.uuid4()), _url(version, world)
    await _first_answer_lost(api, world, resources, url, key, COMPLETION)
    [paid] = await payments_in_db(resources, world.order["id"])
    assert paid.status.value == "succeeded"
    assert await order_status_in_db(resources, world.order["id"]) == "paid"

    r = await _pay(api, world, url, key)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == str(paid.id)
    assert r.json()["status"] == "succeeded"
    again = await _pay(api, world, url, key)  # now recorded: a replay
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == str(paid.id)
    assert len(_charges(localstripe, world)) == 1
    assert [p.id for p in await payments_in_db(resources, world.order["id"])] == [paid.id]


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_retry_while_the_lost_attempt_still_holds_the_key_gets_the_payment(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe, version: str
) -> None:
    """The database was still away when the attempt tried to give its key back, so the key
    is still in flight: the retry is answered from the payment at once, not 409."""
    key, url = str(uuid.uuid4()), _url(version, world)
    # the next statement after the completion's, whatever it is (the release, or whatever
    # decides how to give the key up) is killed too
    await _first_answer_lost(api, world, resources, url, key, COMPLETION, ANY)
    [record] = await _records(resources, key)
    assert record.state == IN_FLIGHT
    [paid] = await payments_in_db(resources, world.order["id"])
    assert paid.status.value == "succeeded"

    r = await _pay(api, world, url, key)
    assert r.status_code == 201, r.text
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == str(paid.id)
    assert len(_charges(localstripe, world)) == 1


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_retry_after_the_settlement_was_lost_finds_the_charge(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe, version: str
) -> None:
    """The provider charged, and the connection died as the answer was being written: the
    payment is still processing. The retry settles it from the provider at once (no 409
    payment-in-progress for the lost attempt's lease) and charges nothing."""
    key, url = str(uuid.uuid4()), _url(version, world)
    await _first_answer_lost(api, world, resources, url, key, SETTLEMENT)
    [lost] = await payments_in_db(resources, world.order["id"])
    assert lost.status.value == "processing"
    assert lost.claimed_until is None  # the lost try's call is over: its lease given back
    [intent] = _charges(localstripe, world)
    assert intent["status"] == "succeeded"

    r = await _pay(api, world, url, key)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == str(lost.id)
    assert r.json()["status"] == "succeeded"
    assert await order_status_in_db(resources, world.order["id"]) == "paid"
    assert len(_charges(localstripe, world)) == 1


async def test_another_key_still_gets_the_conflict(
    api: Api, world: World, resources: Resources, localstripe: LocalStripe
) -> None:
    """Only the key of the lost attempt is answered from its payment: a new key on a paid
    order is still 409 invalid-transition, and charges nothing."""
    url = _url("v1", world)
    await _first_answer_lost(api, world, resources, url, str(uuid.uuid4()), COMPLETION)
    r = await _pay(api, world, url, str(uuid.uuid4()))
    assert r.status_code == 409, r.text
    assert r.json()["current_status"] == "paid"
    assert len(_charges(localstripe, world)) == 1
