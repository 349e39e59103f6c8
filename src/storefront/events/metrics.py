"""The events' metrics. Names and labels are read by the alert rules and dashboards in
deploy/monitoring: never rename them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_CONSUMED = Counter(
    "storefront_events_consumed",
    "Deliveries of domain events to consumers by outcome "
    "(handled, duplicate, retried, dead_lettered).",
    ["consumer", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "storefront_events_dead_lettered",
    "Poison messages a consumer gave up on (undecodable, or failing every delivery); "
    "they wait in the dead-letter queue.",
    ["consumer", "reason"],
)
EVENTS_PUBLISHED = Counter(
    "storefront_events_published",
    "Domain events handed to the broker (or delivered in-process) by type.",
    ["type"],
)

# one stream per database, measured by every process's relay: the most recent sample wins
EVENTS_BACKLOG = Gauge(
    "storefront_events_outbox_backlog",
    "Domain events recorded and not yet relayed (as last measured).",
    multiprocess_mode="mostrecent",
)
EVENTS_OLDEST_AGE = Gauge(
    "storefront_events_outbox_oldest_age_seconds",
    "How long the oldest event not yet relayed has waited (0: none waiting).",
    multiprocess_mode="mostrecent",
)
