"""Webhooks' business KPI: delivery attempts by event type and outcome. The name and labels
are read by the alert rules and dashboards in deploy/monitoring: never rename them."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOK_DELIVERIES = Counter(
    "storefront_webhook_deliveries",
    "Webhook delivery attempts by event type and outcome "
    "(delivered, failed, refused, gone, skipped).",
    ["event", "outcome"],
)


def record_webhook_delivery(event: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(event=event, outcome=outcome).inc()
