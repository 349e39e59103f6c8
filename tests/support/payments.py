"""Paying orders in tests: URLs, requests, the database's view, signed provider events."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import httpx2
import orjson
from sqlalchemy import func, select

from storefront.payments.models import Payment, ProviderEvent
from storefront.resources import Resources
from tests.support.factories import Api, UserHandle
from tests.support.orders import order_url


def payments_url(shop: dict[str, Any], order_id: str) -> str:
    return f"{order_url(shop, order_id)}/payments"


async def pay(
    api: Api,
    user: UserHandle,
    shop: dict[str, Any],
    order_id: str,
    payment_method: str = "pm_card_visa",
    *,
    key: str | None = None,
) -> httpx2.Response:
    return await api.client.post(
        payments_url(shop, order_id),
        json={"payment_method": payment_method},
        headers={**user.auth, "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def payments_in_db(resources: Resources, order_id: str) -> list[Payment]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(Payment).where(Payment.order_id == uuid.UUID(order_id)).order_by(Payment.id)
        )
        return list(rows)


async def processed_events(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ProviderEvent)) or 0)


def signed(
    event: dict[str, Any], secret: str, *, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """``event`` as the provider sends it: the body and its Stripe-Signature header
    (``t=<unix time>,v1=<HMAC-SHA256 of "t.body">``)."""
    body = orjson.dumps(event)
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return body, {
        "Stripe-Signature": f"t={timestamp},v1={mac.hexdigest()}",
        "Content-Type": "application/json",
    }


def provider_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "api_version": "2020-08-27",
    }
