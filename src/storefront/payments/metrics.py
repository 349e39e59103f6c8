"""Payments' business KPIs. Names and labels are read by the alert rules and dashboards in
deploy/monitoring: never rename one.

- ``storefront_payments_total{result}``: payment results (succeeded, declined, failed,
  refunded), defined with the order metrics (orders/metrics.py) where the dashboards first
  read it;
- ``storefront_payment_attempts_total{currency}``: payments started (one provider charge
  attempt each);
- ``storefront_payment_amount_cents_total{currency,result}``: money taken (succeeded) and
  given back (refunded), in minor units;
- ``storefront_payment_provider_seconds{operation,outcome}``: provider call latency.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from storefront.orders.metrics import PAYMENTS

ATTEMPTS = Counter(
    "storefront_payment_attempts", "Payments started (provider charge attempts).", ["currency"]
)
AMOUNT = Counter(
    "storefront_payment_amount_cents",
    "Money taken (succeeded) and given back (refunded), in minor units, by currency.",
    ["currency", "result"],
)
PROVIDER_SECONDS = Histogram(
    "storefront_payment_provider_seconds",
    "Payment provider call latency, by operation (create, retrieve, list, refund, cancel) "
    "and outcome (ok, declined, rejected, unavailable).",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def record_attempt(currency: str) -> None:
    ATTEMPTS.labels(currency=currency).inc()


def record_result(result: str, currency: str, amount_cents: int) -> None:
    """``result``: succeeded, declined, failed or refunded."""
    PAYMENTS.labels(result=result).inc()
    if result in ("succeeded", "refunded"):
        AMOUNT.labels(currency=currency, result=result).inc(amount_cents)


def observe_provider_call(operation: str, outcome: str, seconds: float) -> None:
    PROVIDER_SECONDS.labels(operation=operation, outcome=outcome).observe(seconds)
