"""Payments' typed errors (web/problems.py maps them to RFC 9457 problems)."""

from __future__ import annotations

from typing import ClassVar

from storefront.kit.errors import Conflict, DomainError, UnprocessableEntity


class PaymentDeclined(DomainError):
    """The provider declined the card: nothing was charged, the order stays payable."""

    status: ClassVar[int] = 402
    slug: ClassVar[str] = "payment-declined"
    title: ClassVar[str] = "Payment declined"


class PaymentMethodRejected(UnprocessableEntity):
    slug = "payment-method-rejected"
    title = "The provider refused this payment method"


class PaymentInProgress(Conflict):
    """Another attempt at paying this order is with the provider now."""

    slug = "payment-in-progress"
    title = "A payment of this order is in progress"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.extra["retry_after"] = max(1, retry_after)


class PaymentOutcomeUnknown(DomainError):
    """The provider did not answer in time: the payment may or may not have been taken. It
    stays ``processing`` until the provider says (webhook, reconciliation, or the next
    attempt, which looks it up first); never charged twice."""

    status: ClassVar[int] = 504
    slug: ClassVar[str] = "payment-outcome-unknown"
    title: ClassVar[str] = "The payment provider did not answer"


class PaymentsUnavailable(DomainError):
    """No provider is configured (STOREFRONT_PAYMENTS__SECRET_KEY unset)."""

    status: ClassVar[int] = 503
    slug: ClassVar[str] = "payments-unavailable"
    title: ClassVar[str] = "Payments are not available"


class RefundFailed(DomainError):
    """The provider refused or did not answer the refund: the order stays paid."""

    status: ClassVar[int] = 502
    slug: ClassVar[str] = "refund-failed"
    title: ClassVar[str] = "The refund did not go through"
