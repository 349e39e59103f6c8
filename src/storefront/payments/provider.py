"""Every call to the payment provider, in one adapter (Stripe's API through the official
SDK; the localstripe emulator in development and tests). Breakers, bulkheads and retries
around the provider belong here, in :meth:`StripeProvider._call`, and nowhere else.

What the emulator does not do, and how this adapter stays correct anyway
(docs/decisions/0137-payment-state-machine.md):

- it ignores idempotency keys (the same key creates a second PaymentIntent): a PaymentIntent
  is looked up by our payment id in its metadata before one is created again;
- it has no search (``/v1/payment_intents/search`` is 404) and refuses list filters such as
  ``created``: the lookup lists with ``created[gte]`` and, where that filter is refused,
  pages through the whole list;
- it refunds a refunded charge again: a refund first reads whether the charge is refunded;
- ``pm_card_visa_chargeDeclined`` succeeds there (Stripe declines it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import stripe

from storefront.infra.stripe_client import StripeConnection
from storefront.payments import metrics

T = TypeVar("T")

# the PaymentIntent's metadata key that names our payment (also its idempotency key)
PAYMENT_ID_KEY = "payment_id"
# how far before a payment's creation a lookup still looks (clocks differ a little)
LOOKUP_MARGIN_SECONDS = 300
PAGE_SIZE = 100

SUCCEEDED = "succeeded"
# the provider will not charge this PaymentIntent (declined, or cancelled)
FAILED_STATUSES = frozenset({"requires_payment_method", "canceled"})


@dataclass(frozen=True, slots=True)
class Intent:
    """What we need of a PaymentIntent."""

    id: str
    status: str
    amount: int
    currency: str
    payment_id: str | None
    refunded: bool  # its charge is refunded in full
    failure_code: str | None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


class ProviderError(Exception):
    """The provider answered, and the answer is final for this request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProviderDeclined(ProviderError):
    """The card was declined: nothing was charged."""


class ProviderRejected(ProviderError):
    """The request itself was refused (an unknown payment method...): nothing was charged."""


class ProviderUnavailable(Exception):
    """No answer (refused, reset, timed out, a 5xx): whether it acted is NOT known."""


def _metadata(obj: Any) -> dict[str, Any]:
    metadata = getattr(obj, "metadata", None)
    return metadata.to_dict() if isinstance(metadata, stripe.StripeObject) else {}


def _intent(obj: Any) -> Intent:
    charge = getattr(obj, "latest_charge", None)
    refunded = isinstance(charge, stripe.StripeObject) and bool(getattr(charge, "refunded", False))
    error = getattr(obj, "last_payment_error", None)
    code = None
    if isinstance(error, stripe.StripeObject):
        code = getattr(error, "decline_code", None) or getattr(error, "code", None)
    return Intent(
        id=str(obj.id),
        status=str(obj.status),
        amount=int(obj.amount),
        currency=str(obj.currency).upper(),
        payment_id=_metadata(obj).get(PAYMENT_ID_KEY),
        refunded=refunded,
        failure_code=None if code is None else str(code),
    )


class StripeProvider:
    def __init__(self, connection: StripeConnection) -> None:
        self.client = connection.client

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """One provider call: its latency and outcome recorded, its errors sorted into
        final answers (ProviderDeclined, ProviderRejected) and unknown outcomes
        (ProviderUnavailable)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await call()
        except stripe.CardError as exc:
            outcome = "declined"
            error = exc.error
            code = (error.decline_code if error else None) or exc.code or "card_declined"
            raise ProviderDeclined(str(code), exc.user_message or "declined") from exc
        except (stripe.APIConnectionError, TimeoutError) as exc:
            outcome = "unavailable"
            raise ProviderUnavailable(f"{operation}: no answer from the provider") from exc
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status in (409, 429) or status == 0:
                outcome = "unavailable"
                raise ProviderUnavailable(f"{operation}: provider answered {status}") from exc
            outcome = "rejected"
            raise ProviderRejected(str(exc.code or "invalid_request"), str(exc)) from exc
        finally:
            metrics.observe_provider_call(operation, outcome, time.perf_counter() - started)

    async def create_and_confirm(
        self,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        shop_id: uuid.UUID,
        amount_cents: int,
        currency: str,
        payment_method: str,
    ) -> Intent:
        """Create and confirm a PaymentIntent for our payment ``payment_id`` (its
        idempotency key and metadata)."""
        params: dict[str, Any] = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {
                PAYMENT_ID_KEY: str(payment_id),
                "order_id": str(order_id),
                "shop_id": str(shop_id),
            },
        }
        obj = await self._call(
            "create",
            lambda: self.client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": str(payment_id)},
            ),
        )
        return _intent(obj)

    async def retrieve(self, reference: str) -> Intent:
        obj = await self._call(
            "retrieve",
            lambda: self.client.v1.payment_intents.retrieve_async(
                reference, params={"expand": ["latest_charge"]}
            ),
        )
        return _intent(obj)

    async def find(self, payment_id: uuid.UUID, *, created_at: datetime) -> Intent | None:
        """The PaymentIntent created for our payment ``payment_id``, if the provider has
        one (an uncertain earlier attempt may or may not have reached it)."""
        since = int(created_at.timestamp()) - LOOKUP_MARGIN_SECONDS
        try:
            return await self._find(payment_id, {"limit": PAGE_SIZE, "created": {"gte": since}})
        except ProviderRejected:
            # the emulator refuses the filter: the whole list then
            return await self._find(payment_id, {"limit": PAGE_SIZE})

    async def _find(self, payment_id: uuid.UUID, params: dict[str, Any]) -> Intent | None:
        wanted = str(payment_id)
        found: Intent | None = None
        while True:
            page = await self._call(
                "list",
                lambda query=params: self.client.v1.payment_intents.list_async(  # type: ignore[misc]
                    params=query
                ),
            )
            for obj in page.data:
                if _metadata(obj).get(PAYMENT_ID_KEY) == wanted:
                    intent = _intent(obj)
                    # several (the emulator ignored a key): the one that charged wins
                    if found is None or intent.succeeded:
                        found = intent
            if not page.has_more or not page.data:
                break
            params = {**params, "starting_after": page.data[-1].id}
        if found is not None:
            # the listing does not expand the charge: read it for its refund state
            return await self.retrieve(found.id)
        return None

    async def refund(self, reference: str, *, payment_id: uuid.UUID) -> Intent:
        """Refund the PaymentIntent in full, unless its charge is refunded already."""
        intent = await self.retrieve(reference)
        if intent.refunded:
            return intent
        await self._call(
            "refund",
            lambda: self.client.v1.refunds.create_async(
                params={"payment_intent": reference, "metadata": {PAYMENT_ID_KEY: str(payment_id)}},
                options={"idempotency_key": f"refund-{payment_id}"},
            ),
        )
        return await self.retrieve(reference)

    async def cancel(self, reference: str) -> Intent:
        """Cancel a PaymentIntent that has not charged (waiting for an action we do not
        support); a final answer from the provider leaves it as it is."""
        obj = await self._call(
            "cancel", lambda: self.client.v1.payment_intents.cancel_async(reference)
        )
        return _intent(obj)
