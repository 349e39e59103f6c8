"""Orders' business KPIs: orders placed (count and value), cancelled and expired, and
payments (here until payments are a domain of their own). Names and labels are read by the
alert rules and dashboards in deploy/monitoring: never rename one."""

from __future__ import annotations

from prometheus_client import Counter

ORDERS_PLACED = Counter("storefront_orders_placed", "Orders placed, by currency.", ["currency"])
ORDER_VALUE = Counter(
    "storefront_order_value_cents",
    "Value of placed orders in minor units (cents), by currency.",
    ["currency"],
)
ORDERS_CANCELLED = Counter("storefront_orders_cancelled", "Orders cancelled.")
ORDERS_EXPIRED = Counter(
    "storefront_orders_expired", "Pending orders expired unpaid (their stock released)."
)
PAYMENTS = Counter("storefront_payments", "Payments by result (succeeded, failed).", ["result"])


def record_order_placed(currency: str, total_cents: int) -> None:
    ORDERS_PLACED.labels(currency=currency).inc()
    ORDER_VALUE.labels(currency=currency).inc(total_cents)


def record_order_cancelled() -> None:
    ORDERS_CANCELLED.inc()


def record_order_expired() -> None:
    ORDERS_EXPIRED.inc()


def record_payment(*, succeeded: bool) -> None:
    """For the payment integration: one payment attempt's result."""
    PAYMENTS.labels(result="succeeded" if succeeded else "failed").inc()
