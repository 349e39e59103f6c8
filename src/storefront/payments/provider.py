"""Every call to the payment provider, in one adapter (Stripe's API through the official
SDK; the localstripe emulator in development and tests). Breakers, bulkheads and retries
around the provider belong here, in :meth:`StripeProvider._call`, and nowhere else:

- each attempt goes to an endpoint of the discovered service ``payments`` (decision 0139);
  one that cannot be connected to or that times out is reported and leaves the rotation;
- each attempt runs under the ``payments`` guard (decision 0138): circuit breaker, bulkhead,
  deadline. Declines and refusals are answers (they do not count against the circuit);
  connection errors, timeouts and 5xx do. A refused attempt (open circuit, full bulkhead)
  raises :class:`~storefront.resilience.DependencyUnavailable`: nothing was sent;
- reads (retrieve, list) are retried with jittered back-off. A charge, a refund or a
  cancellation is never retried once it may have reached the provider; only an attempt
  whose connection never opened (nothing was sent) is tried again, on the next endpoint.

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

import aiohttp
import stamina
import stripe

from storefront.infra.stripe_client import StripeConnection
from storefront.payments import metrics
from storefront.resilience import DependencyUnavailable, Resilience
from storefront.resilience import metrics as resilience_metrics

T = TypeVar("T")
Call = Callable[[stripe.StripeClient], Awaitable[T]]

# the dependency's name: its circuit, bulkhead, metrics and STOREFRONT_RESILIENCE__
# DEPENDENCIES__PAYMENTS__* overrides, and the discovered service
DEPENDENCY = "payments"

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
    """No answer (refused, reset, timed out, a 5xx): whether it acted is NOT known, unless
    ``reached`` is False (the connection never opened: nothing was sent)."""

    def __init__(self, message: str, *, reached: bool = True, endpoint_failed: bool = False):
        super().__init__(message)
        self.reached = reached
        self.endpoint_failed = endpoint_failed  # the endpoint itself failed: eject it


def _never_connected(exc: BaseException) -> bool:
    """The SDK's connection error came from opening the connection (refused, unreachable,
    TLS handshake, connect timeout): no byte of the request was sent."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


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
    def __init__(self, connection: StripeConnection, resilience: Resilience) -> None:
        self.clients = connection.clients
        self.resilience = resilience

    async def _call(self, operation: str, call: Call[T], *, idempotent: bool) -> T:
        """One provider call (module docstring): attempts on the service's endpoints under
        the guard, reads retried, a charge tried again only where nothing was sent."""
        policy = self.resilience.policy(DEPENDENCY)
        if policy.retry_attempts <= 1:
            return await self._attempt(operation, call)

        def again(exc: Exception) -> bool:
            return isinstance(exc, ProviderUnavailable) and (idempotent or not exc.reached)

        retrying = stamina.retry_context(
            on=again,
            attempts=policy.retry_attempts,
            timeout=None,
            wait_initial=policy.retry_initial_seconds,
            wait_max=policy.retry_max_seconds,
            wait_jitter=policy.retry_initial_seconds,
        )
        async for try_ in retrying:
            with try_:
                if try_.num > 1:
                    resilience_metrics.record_retry(DEPENDENCY)
                return await self._attempt(operation, call)
        raise AssertionError("unreachable: stamina re-raises the last failure")  # pragma: no cover

    async def _attempt(self, operation: str, call: Call[T]) -> T:
        """One attempt on one endpoint: its latency and outcome recorded, its errors sorted
        into final answers (ProviderDeclined, ProviderRejected) and unknown outcomes
        (ProviderUnavailable); DependencyUnavailable (or ServiceUnresolvable) when it was
        not made at all."""
        endpoint, client = await self.clients.pick()
        started = time.perf_counter()
        outcome: str | None = "ok"
        try:
            async with self.resilience.guard(DEPENDENCY, exclude=(ProviderError,)):
                result = await self._sorted(operation, call, client)
        except DependencyUnavailable:
            outcome = None  # refused before anything was sent: no provider latency
            raise
        except TimeoutError as exc:  # the guard's deadline
            outcome = "unavailable"
            self.clients.report_failure(endpoint)
            raise ProviderUnavailable(f"{operation}: no answer in time") from exc
        except ProviderUnavailable as exc:
            outcome = "unavailable"
            if exc.endpoint_failed:
                self.clients.report_failure(endpoint)
            raise
        except ProviderDeclined:
            outcome = "declined"
            self.clients.report_success(endpoint)
            raise
        except ProviderRejected:
            outcome = "rejected"
            self.clients.report_success(endpoint)
            raise
        except BaseException:  # cancelled (the client went away): no outcome to record
            outcome = None
            raise
        finally:
            if outcome is not None:
                metrics.observe_provider_call(operation, outcome, time.perf_counter() - started)
        self.clients.report_success(endpoint)
        return result

    @staticmethod
    async def _sorted(operation: str, call: Call[T], client: stripe.StripeClient) -> T:
        try:
            return await call(client)
        except stripe.CardError as exc:
            error = exc.error
            code = (error.decline_code if error else None) or exc.code or "card_declined"
            raise ProviderDeclined(str(code), exc.user_message or "declined") from exc
        except stripe.APIConnectionError as exc:
            raise ProviderUnavailable(
                f"{operation}: no answer from the provider",
                reached=not _never_connected(exc),
                endpoint_failed=True,
            ) from exc
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status in (409, 429) or status == 0:
                raise ProviderUnavailable(f"{operation}: provider answered {status}") from exc
            raise ProviderRejected(str(exc.code or "invalid_request"), str(exc)) from exc

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
            lambda client: client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": str(payment_id)},
            ),
            idempotent=False,
        )
        return _intent(obj)

    async def retrieve(self, reference: str) -> Intent:
        obj = await self._call(
            "retrieve",
            lambda client: client.v1.payment_intents.retrieve_async(
                reference, params={"expand": ["latest_charge"]}
            ),
            idempotent=True,
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
                lambda client, query=params: client.v1.payment_intents.list_async(  # type: ignore[misc]
                    params=query
                ),
                idempotent=True,
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
            lambda client: client.v1.refunds.create_async(
                params={"payment_intent": reference, "metadata": {PAYMENT_ID_KEY: str(payment_id)}},
                options={"idempotency_key": f"refund-{payment_id}"},
            ),
            idempotent=False,
        )
        return await self.retrieve(reference)

    async def cancel(self, reference: str) -> Intent:
        """Cancel a PaymentIntent that has not charged (waiting for an action we do not
        support); a final answer from the provider leaves it as it is."""
        obj = await self._call(
            "cancel",
            lambda client: client.v1.payment_intents.cancel_async(reference),
            idempotent=False,
        )
        return _intent(obj)
