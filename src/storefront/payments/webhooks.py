"""The provider's webhooks (Stripe's signature scheme): verified, processed once per event
id, and used only as a trigger: the PaymentIntent is read back from the provider and the
payment settled from that (the same settlement as the synchronous call and reconciliation),
so an event that arrives late, twice or out of order changes nothing it should not."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.kit.db import utcnow
from storefront.kit.errors import DomainError
from storefront.payments.errors import PaymentOutcomeUnknown
from storefront.payments.models import ProviderEvent
from storefront.payments.provider import (
    PAYMENT_ID_KEY,
    ProviderError,
    ProviderUnavailable,
)
from storefront.payments.repository import find_by_id, find_by_reference
from storefront.payments.service import PaymentService
from storefront.resources import Resources

logger = logging.getLogger("storefront.payments.webhooks")

PAYMENT_INTENT_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed"})
CHARGE_EVENTS = frozenset({"charge.refunded"})


class WebhookRefused(DomainError):
    status = 400
    slug = "webhook-signature-invalid"
    title = "Webhook refused"


def verify(payload: bytes, signature: str | None, resources: Resources) -> Any:
    """The event, if ``signature`` (the Stripe-Signature header) signs ``payload`` with the
    webhook secret within the tolerance; WebhookRefused otherwise (forged, altered, stale)."""
    settings = resources.settings.payments
    if settings.webhook_secret is None or not signature:
        raise WebhookRefused("The webhook is not signed with our webhook secret.")
    try:
        return stripe.Webhook.construct_event(
            payload.decode("utf-8"),
            signature,
            settings.webhook_secret.get_secret_value(),
            tolerance=settings.webhook_tolerance_seconds,
        )
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError) as exc:
        raise WebhookRefused("The webhook signature does not verify.") from exc


def _references(event: Any) -> tuple[str | None, str | None]:
    """(PaymentIntent id, our payment id from its metadata) the event is about."""
    obj = event.data.object
    if event.type in PAYMENT_INTENT_EVENTS:
        metadata = getattr(obj, "metadata", None)
        payment_id = None
        if isinstance(metadata, stripe.StripeObject):
            payment_id = metadata.to_dict().get(PAYMENT_ID_KEY)
        return str(obj.id), payment_id
    if event.type in CHARGE_EVENTS:
        reference = getattr(obj, "payment_intent", None)
        return (str(reference) if reference else None), None
    return None, None


async def handle(session: AsyncSession, resources: Resources, event: Any) -> bool:
    """Process ``event`` once; False when its id was processed before (a replay)."""
    event_id = str(event.id)
    if await session.scalar(select(ProviderEvent.id).where(ProviderEvent.id == event_id)):
        return False
    reference, payment_id = _references(event)
    payment = None
    if reference is not None:
        payment = await find_by_reference(session, reference)
    if payment is None and payment_id is not None:
        try:
            payment = await find_by_id(session, uuid.UUID(payment_id))
        except ValueError:
            payment = None
    intent = None
    if payment is not None and reference is not None:
        service = PaymentService.of(session, payment.shop_id, resources)
        try:
            # the event is a trigger; the provider's current state is the truth
            intent = await service.require_provider().retrieve(reference)
        except (ProviderUnavailable, ProviderError) as exc:
            # not recorded as processed: the provider sends it again
            raise PaymentOutcomeUnknown("The payment provider did not answer.") from exc
    session.add(ProviderEvent(id=event_id[:255], type=str(event.type)[:100], received_at=utcnow()))
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()  # the same event, processed concurrently
        return False
    if payment is not None and intent is not None:
        await PaymentService.of(session, payment.shop_id, resources).settle(payment, intent)
    await session.commit()
    return True
