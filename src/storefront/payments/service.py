"""Payment rules: one live payment per order, the row committed before the provider is
called, every uncertain outcome settled from the provider before anything is charged again
(docs/decisions/0137-payment-state-machine.md).

The session is committed at fixed points here (the route's transaction is not one unit):
the payment row and its lease before the provider call, each settlement after it. A
provider call is never made inside an open write transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storefront.auditlog import record
from storefront.events import EventType
from storefront.events import record as record_event
from storefront.idempotency import StoredResponse
from storefront.infra.discovery import ServiceUnresolvable
from storefront.kit.db import new_id, utcnow
from storefront.kit.errors import InvalidTransition, NotFound
from storefront.orders.models import Order, OrderStatus
from storefront.orders.service import OrderService, OrderViewer
from storefront.payments import metrics
from storefront.payments.errors import (
    PaymentDeclined,
    PaymentInProgress,
    PaymentMethodRejected,
    PaymentOutcomeUnknown,
    PaymentsUnavailable,
    RefundFailed,
)
from storefront.payments.models import Payment, PaymentStatus
from storefront.payments.provider import (
    Intent,
    ProviderDeclined,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    StripeProvider,
)
from storefront.payments.repository import PaymentRepository
from storefront.resilience import DependencyUnavailable
from storefront.resources import Resources
from storefront.settings import PaymentsSettings

logger = logging.getLogger("storefront.payments")

PROCESSING = (PaymentStatus.processing,)
# a payment that took the money (it may have been given back since): the answer of its key
CHARGED = (PaymentStatus.succeeded, PaymentStatus.refunded)
# a late success may still settle a payment written off as failed (the provider charged it
# after all); it is then kept or refunded, never lost
UNSETTLED = (PaymentStatus.processing, PaymentStatus.failed)
# the provider has no PaymentIntent for a payment whose lease ran out: it never got there
NOT_AT_PROVIDER = "not_at_provider"
ABANDONED = "abandoned"  # it waited for an action (3-D Secure) we do not offer
# the charge was never sent: the provider's circuit was open, its bulkhead full, or no
# endpoint could be found or connected to (the order stays payable at once)
NOT_SENT = "not_sent"
# refused before anything reached the provider (503 problems with Retry-After)
REFUSED = (DependencyUnavailable, ServiceUnresolvable)


class PaymentService:
    def __init__(
        self,
        session: AsyncSession,
        shop_id: uuid.UUID,
        *,
        provider: StripeProvider | None,
        settings: PaymentsSettings,
        orders: OrderService,
    ) -> None:
        """``orders``: the order service of the same session and shop (payments call
        orders, never the reverse)."""
        self.session = session
        self.shop_id = shop_id
        self.provider = provider
        self.settings = settings
        self.orders = orders
        self.repo = PaymentRepository(session, shop_id)

    @classmethod
    def of(cls, session: AsyncSession, shop_id: uuid.UUID, resources: Resources) -> PaymentService:
        """The service for one shop on ``session``, from the process's resources."""
        stripe = resources.stripe
        return cls(
            session,
            shop_id,
            provider=None if stripe is None else StripeProvider(stripe, resources.resilience),
            settings=resources.settings.payments,
            orders=OrderService(
                session,
                shop_id,
                cache=resources.cache,
                vault=resources.vault,
                jobs=resources.jobs,
                orders=resources.settings.orders,
            ),
        )

    def require_provider(self) -> StripeProvider:
        """The provider; PaymentsUnavailable (503) when none is configured."""
        return self._provider()

    def _provider(self) -> StripeProvider:
        if self.provider is None:
            raise PaymentsUnavailable(
                "No payment provider is configured (STOREFRONT_PAYMENTS__SECRET_KEY)."
            )
        return self.provider

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.claim_seconds)

    async def _fresh(self, payment_id: uuid.UUID) -> Payment:
        # read again with its shop (a session refresh would read it by id alone: decision 0170)
        payment = await self.repo.get(payment_id, fresh=True)
        if payment is None:  # pragma: no cover - payments are never deleted
            raise NotFound("No such payment.")
        return payment

    async def _order(self, viewer: OrderViewer, order_id: uuid.UUID) -> Order:
        order = await self.orders.get(viewer, order_id)
        # the committed status now, read with the shop (a refresh reads by id alone: 0170)
        status = await self.session.scalar(
            select(Order.status).where(Order.shop_id == order.shop_id, Order.id == order.id)
        )
        set_committed_value(order, "status", status)
        return order

    # --- reading -------------------------------------------------------------------------

    async def list_for_order(self, viewer: OrderViewer, order_id: uuid.UUID) -> list[Payment]:
        """The order's payments, oldest first: its customer and the shop's staff (anyone
        else: 404, the order is not theirs to see)."""
        await self.orders.get(viewer, order_id)
        return await self.repo.list_for_order(order_id)

    async def list_for_orders(
        self, viewer: OrderViewer, order_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Payment]]:
        """The payments of several orders, by order, oldest first, in one statement: only
        of the orders ``viewer`` may see (their customer's own, or every order for staff),
        the others' come back empty as if they had none."""
        visible = await self.orders.visible_ids(viewer, order_ids)
        found: dict[uuid.UUID, list[Payment]] = {order_id: [] for order_id in order_ids}
        for payment in await self.repo.list_for_orders(sorted(visible)):
            found[payment.order_id].append(payment)
        return found

    # --- paying --------------------------------------------------------------------------

    async def pay(
        self,
        viewer: OrderViewer,
        order_id: uuid.UUID,
        payment_method: str,
        *,
        attempt: uuid.UUID | None = None,
    ) -> Payment:
        """Pay ``order_id``. ``attempt``: the Idempotency-Key's attempt id, which is the id
        of the first payment made under the key (decision 0191): when that payment exists
        (an earlier try of this key whose answer was lost), it is the answer, settled from
        the provider first if its outcome is unknown; only if it charged nothing is a new
        payment made."""
        provider = self._provider()
        order = await self._order(viewer, order_id)
        if order.customer_id != viewer.principal.user_id:
            # staff may see the order, but only its customer pays it
            raise NotFound("No such order.")
        payment_id = attempt or new_id()
        earlier = None if attempt is None else await self.attempted(attempt, order_id)
        if earlier is not None:
            if earlier.status is PaymentStatus.processing:
                # settled from the provider first, under its lease as any uncertain
                # payment (the lost try gave it back once its call was over)
                earlier = await self.resume(earlier, now=utcnow())
            if earlier.status in CHARGED:
                return earlier
            payment_id = new_id()  # it charged nothing: a new payment, under the same key
            order = await self._order(viewer, order_id)
        live = await self.repo.live_for_order(order_id)
        if live is not None and live.status is PaymentStatus.processing:
            # an earlier attempt whose outcome we do not know: settled from the provider
            # first (it may have charged), never charged again blindly
            live = await self.resume(live, now=utcnow())
            if live.status is PaymentStatus.succeeded:
                return live
            order = await self._order(viewer, order_id)
        if order.status is not OrderStatus.pending:
            raise InvalidTransition(
                f"An order that is {order.status.value} cannot be paid.",
                extra={"current_status": order.status.value},
            )
        now = utcnow()
        payment = Payment(
            id=payment_id,
            shop_id=self.shop_id,
            order_id=order_id,
            status=PaymentStatus.processing,
            amount_cents=order.total_cents,
            currency=order.currency,
            payment_method=payment_method,
            provider_reference=None,
            failure_code=None,
            claimed_until=self._lease(now),
            settled_at=None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(payment)
        try:
            await self.session.flush()
        except IntegrityError:
            # uq_payments_shop_id_order_id_live: a concurrent attempt wrote its row first
            await self.session.rollback()
            raise PaymentInProgress(
                "Another payment of this order is in progress.",
                retry_after=int(self.settings.claim_seconds),
            ) from None
        record(
            self.session,
            "payment.started",
            object_type="payment",
            object_id=payment.id,
            shop_id=self.shop_id,
            details={"order_id": str(order_id), "amount_cents": payment.amount_cents},
        )
        # committed BEFORE the provider is called: whatever happens next, the attempt is
        # on record and its id is the provider's idempotency key and metadata
        await self.session.commit()
        metrics.record_attempt(payment.currency)
        try:
            intent = await provider.create_and_confirm(
                payment_id=payment.id,
                order_id=order_id,
                shop_id=self.shop_id,
                amount_cents=payment.amount_cents,
                currency=payment.currency,
                payment_method=payment_method,
            )
        except ProviderDeclined as exc:
            await self._fail(payment, exc.code, result="declined")
            raise PaymentDeclined(
                "The card was declined; nothing was charged and the order can still be paid.",
                extra={"payment_id": str(payment.id), "decline_code": exc.code},
            ) from exc
        except ProviderRejected as exc:
            await self._fail(payment, exc.code, result="failed")
            raise PaymentMethodRejected(
                "The provider refused this payment method; nothing was charged.",
                extra={"payment_id": str(payment.id), "provider_code": exc.code},
            ) from exc
        except REFUSED:
            # nothing was sent (an open circuit, a full bulkhead, no endpoint): written off
            # now, so the next attempt is not held up by this one's lease
            await self._fail(payment, NOT_SENT, result="failed")
            raise
        except ProviderUnavailable as exc:
            if not exc.reached:  # no connection ever opened: nothing was charged
                await self._fail(payment, NOT_SENT, result="failed")
                raise DependencyUnavailable(
                    "The payment provider cannot be reached; nothing was charged.",
                    dependency="payments",
                    reason="unreachable",
                    retry_after=5,
                ) from exc
            # it may have charged: the payment stays processing (and leased) until the
            # provider tells, through a webhook, the reconciliation job or the next attempt
            raise PaymentOutcomeUnknown(
                "The payment provider did not answer; the payment is being checked.",
                headers={"Retry-After": str(int(self.settings.claim_seconds))},
                extra={"payment_id": str(payment.id)},
            ) from exc
        try:
            return await self.settle(payment, intent)
        except BaseException:
            # the provider answered and the settlement was lost (the connection died): no
            # call of this payment is on its way any more, so its lease is given back when
            # the database lets us, and the retry of this key settles it at once
            with anyio.CancelScope(shield=True):
                try:
                    await self.session.rollback()  # (expires ``payment``: its id kept)
                    await self.repo.release(payment_id)
                    await self.session.commit()
                except Exception:  # noqa: BLE001 - the settlement's error is the answer
                    logger.warning("payment %s: its lease could not be given back", payment_id)
            raise

    async def attempted(self, attempt: uuid.UUID, order_id: uuid.UUID) -> Payment | None:
        """The payment an Idempotency-Key's attempt made for ``order_id`` (its id is the
        attempt id), as committed now."""
        payment = await self.repo.get(attempt, fresh=True)
        return payment if payment is not None and payment.order_id == order_id else None

    async def _fail(self, payment: Payment, code: str, *, result: str) -> None:
        if await self.repo.settle(
            payment.id, allowed_from=PROCESSING, to=PaymentStatus.failed, failure_code=code[:100]
        ):
            record(
                self.session,
                "payment.failed",
                object_type="payment",
                object_id=payment.id,
                shop_id=self.shop_id,
                details={"order_id": str(payment.order_id), "reason": code[:100]},
            )
            metrics.record_result(result, payment.currency, payment.amount_cents)
        await self.session.commit()

    # --- settling from the provider --------------------------------------------------------

    async def resume(self, payment: Payment, *, now: datetime) -> Payment:
        """Settle a ``processing`` payment from what the provider knows of it. Takes its
        lease first (PaymentInProgress while another caller holds it), so two callers never
        ask, and never charge, at once."""
        provider = self._provider()
        held = payment.claimed_until or now
        if not await self.repo.claim(payment.id, now=now, until=self._lease(now)):
            await self.session.rollback()
            raise PaymentInProgress(
                "A payment of this order is in progress.",
                retry_after=int((held - now).total_seconds()) + 1,
            )
        await self.session.commit()
        try:
            return await self._resume(provider, payment)
        except REFUSED:
            # nothing was asked: the lease goes back, the next caller may ask at once
            await self.repo.release(payment.id)
            await self.session.commit()
            raise

    async def _resume(self, provider: StripeProvider, payment: Payment) -> Payment:
        try:
            if payment.provider_reference is not None:
                intent: Intent | None = await provider.retrieve(payment.provider_reference)
            else:
                intent = await provider.find(payment.id, created_at=payment.created_at)
        except (ProviderUnavailable, ProviderError) as exc:
            raise PaymentOutcomeUnknown(
                "The payment provider did not answer; the payment is being checked.",
                headers={"Retry-After": str(int(self.settings.claim_seconds))},
                extra={"payment_id": str(payment.id)},
            ) from exc
        if intent is None:
            # its lease ran out before this claim, so the call that created it gave up
            # long ago: the provider never got it (a late one is refunded, see settle)
            await self._fail(payment, NOT_AT_PROVIDER, result="failed")
            return await self._fresh(payment.id)
        if not (intent.succeeded or intent.failed or intent.refunded):
            # still waiting (for an action we do not offer): cancelled, then written off
            try:
                intent = await provider.cancel(intent.id)
            except ProviderUnavailable as exc:
                raise PaymentOutcomeUnknown(
                    "The payment provider did not answer; the payment is being checked.",
                    extra={"payment_id": str(payment.id)},
                ) from exc
            except ProviderError:
                intent = await provider.retrieve(intent.id)
            if not (intent.succeeded or intent.failed or intent.refunded):
                await self._fail(payment, ABANDONED, result="failed")
                return await self._fresh(payment.id)
        return await self.settle(payment, intent)

    async def settle(self, payment: Payment, intent: Intent) -> Payment:
        """Apply what the provider says of ``payment`` (its PaymentIntent ``intent``):
        succeeded -> the order is paid (or, if the order can no longer be paid, or has
        another live payment, the money goes back); failed -> failed; refunded ->
        refunded. Idempotent: settling twice changes nothing the second time."""
        if payment.provider_reference != intent.id:
            await self.repo.set_reference(payment.id, intent.id)
        if intent.refunded:
            await self._refunded(payment, allowed_from=(*UNSETTLED, PaymentStatus.succeeded))
        elif intent.failed:
            if await self.repo.settle(
                payment.id,
                allowed_from=PROCESSING,
                to=PaymentStatus.failed,
                failure_code=(intent.failure_code or intent.status)[:100],
            ):
                self._record("payment.failed", payment)
                metrics.record_result("declined", payment.currency, payment.amount_cents)
        elif intent.succeeded:
            await self._settle_success(payment, intent)
        await self.session.commit()
        return await self._fresh(payment.id)

    async def _settle_success(self, payment: Payment, intent: Intent) -> None:
        current = await self._fresh(payment.id)
        if current.status in (PaymentStatus.succeeded, PaymentStatus.refunded):
            return  # settled already (a replayed webhook, a second reconciliation)
        other = await self.repo.live_for_order(payment.order_id)
        if other is None or other.id == payment.id:
            # the order first: its compare-and-set decides between this payment and
            # whatever else changed the order meanwhile
            if await self.orders.mark_paid(payment.order_id):
                await self.repo.settle(
                    payment.id, allowed_from=UNSETTLED, to=PaymentStatus.succeeded
                )
                self._record("payment.succeeded", payment)
                self._order_event(EventType.order_paid, payment)
                metrics.record_result("succeeded", payment.currency, payment.amount_cents)
                return
            current = await self._fresh(payment.id)
            if current.status in (PaymentStatus.succeeded, PaymentStatus.refunded):
                return  # a concurrent settlement of this same payment won
        # charged for an order that cannot take it (it expired or was cancelled while the
        # provider was charging, or another payment paid it): the money goes back at once.
        # Until the refund is confirmed the payment stays unsettled, so the reconciliation
        # job (or the next webhook) tries again.
        await self.session.commit()  # no write transaction is held over the provider call
        logger.warning("payment %s charged for an order it cannot pay: refunding", payment.id)
        try:
            refunded = await self._provider().refund(intent.id, payment_id=payment.id)
        except (ProviderUnavailable, ProviderError, *REFUSED):
            logger.warning("refund of payment %s failed; reconciliation retries", payment.id)
            return
        if refunded.refunded:
            await self._refunded(payment, allowed_from=(*UNSETTLED, PaymentStatus.succeeded))

    async def _refunded(self, payment: Payment, *, allowed_from: tuple[PaymentStatus, ...]) -> None:
        """The provider refunded ``payment``: ``refunded``. From ``succeeded`` the order had
        been paid, so ``order.refunded`` is recorded in the same transaction (the sales
        projection counts the refund against the revenue its ``order.paid`` added); a charge
        that never paid the order (refunded at once) records none."""
        unpaid = tuple(s for s in allowed_from if s is not PaymentStatus.succeeded)
        if PaymentStatus.succeeded in allowed_from and await self.repo.settle(
            payment.id, allowed_from=(PaymentStatus.succeeded,), to=PaymentStatus.refunded
        ):
            self._order_event(EventType.order_refunded, payment)
        elif not unpaid or not await self.repo.settle(
            payment.id, allowed_from=unpaid, to=PaymentStatus.refunded
        ):
            return
        self._record("payment.refunded", payment)
        metrics.record_result("refunded", payment.currency, payment.amount_cents)

    def _record(self, action: str, payment: Payment) -> None:
        record(
            self.session,
            action,
            object_type="payment",
            object_id=payment.id,
            shop_id=self.shop_id,
            details={"order_id": str(payment.order_id), "amount_cents": payment.amount_cents},
        )

    def _order_event(self, event_type: EventType, payment: Payment) -> None:
        """``order.paid`` / ``order.refunded`` in the settlement's transaction (decision
        0140): the amount the provider took or gave back, no personal data."""
        record_event(
            self.session,
            event_type,
            subject=f"orders/{payment.order_id}",
            shop_id=self.shop_id,
            data={
                "id": str(payment.order_id),
                "shop_id": str(self.shop_id),
                "payment_id": str(payment.id),
                "currency": payment.currency,
                "amount_cents": payment.amount_cents,
            },
        )

    # --- cancelling (refunds) ------------------------------------------------------------

    async def cancel_order(self, viewer: OrderViewer, order_id: uuid.UUID) -> Order:
        """Cancel an order (orders' rules: customers while pending, staff while pending or
        paid); a paid order's payment is refunded at the provider first, and the order is
        cancelled only once the refund went through (RefundFailed: it stays paid)."""
        order = await self._order(viewer, order_id)
        if viewer.is_staff and order.status is OrderStatus.paid:
            live = await self.repo.live_for_order(order_id)
            if live is not None and live.status is PaymentStatus.succeeded:
                await self._refund(live)
        return await self.orders.cancel(viewer, order_id)

    async def _refund(self, payment: Payment) -> None:
        provider = self._provider()
        now = utcnow()
        if payment.provider_reference is None:  # pragma: no cover - succeeded has one
            raise RefundFailed("The payment has no provider reference.")
        if not await self.repo.claim(payment.id, now=now, until=self._lease(now)):
            await self.session.rollback()
            raise PaymentInProgress(
                "This order's payment is being refunded.",
                retry_after=int(self.settings.claim_seconds),
            )
        await self.session.commit()
        try:
            intent = await provider.refund(payment.provider_reference, payment_id=payment.id)
        except REFUSED:
            await self.repo.release(payment.id)  # nothing was asked: the order stays paid
            await self.session.commit()
            raise
        except (ProviderUnavailable, ProviderError) as exc:
            await self.repo.release(payment.id)
            await self.session.commit()
            raise RefundFailed(
                "The provider did not confirm the refund; the order is still paid.",
                headers={"Retry-After": "30"},
            ) from exc
        if not intent.refunded:  # pragma: no cover - a refund the provider holds back
            raise RefundFailed("The provider has not refunded the payment yet.")
        await self._refunded(payment, allowed_from=(PaymentStatus.succeeded,))
        # committed before the order is cancelled: the money went back whatever happens next
        # (a failed cancellation leaves a paid order without a live payment; cancelling it
        # again refunds nothing)
        await self.session.commit()


@dataclass(frozen=True, slots=True)
class PaymentAttempts:
    """What a keyed payment attempt left behind, for the idempotency store (decision 0191):
    the attempt's payment is the one whose id is the attempt id. ``respond``: the route's
    answer for a payment (v1's JSON, v2's HAL document)."""

    service: PaymentService
    order_id: uuid.UUID
    respond: Callable[[Payment], StoredResponse]

    async def committed(self, attempt: uuid.UUID) -> bool:
        # a failed one charged nothing: the key is released and a retry pays anew
        payment = await self.service.attempted(attempt, self.order_id)
        return payment is not None and payment.status is not PaymentStatus.failed

    async def answer(self, attempt: uuid.UUID) -> StoredResponse | None:
        payment = await self.service.attempted(attempt, self.order_id)
        if payment is None or payment.status not in CHARGED:
            return None
        return self.respond(payment)
