"""Metrics of every guarded dependency. The names and labels are read by the alert rules
and dashboards in deploy/monitoring: never rename them. ``dependency`` is a configured name
(``payments``, ``webhooks``, ``mail``), never a host or anything a user chose."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 0 closed, 1 half-open (probing), 2 open
STATE_VALUES = {"closed": 0, "half-opened": 1, "opened": 2}

BREAKER_STATE = Gauge(
    "storefront_circuit_breaker_state",
    "Circuit breaker state as this process last saw it (0 closed, 1 half-open, 2 open); "
    "for a dependency with a breaker per target (webhooks), the worst of them.",
    ["dependency"],
    multiprocess_mode="livemax",
)
CALLS = Counter(
    "storefront_dependency_calls",
    "Guarded calls by outcome: success, failure, timeout (counted as failures by the "
    "breaker), excluded (an error the dependency answered on purpose, e.g. a declined card), "
    "open (refused by the open circuit), busy (refused by the bulkhead).",
    ["dependency", "outcome"],
)
FAILURES = Counter(
    "storefront_dependency_failures",
    "Failed calls by error class (the breaker counts these).",
    ["dependency", "error"],
)
RETRIES = Counter(
    "storefront_dependency_retries",
    "Attempts beyond the first (idempotent calls only).",
    ["dependency"],
)
DURATION = Histogram(
    "storefront_dependency_call_duration_seconds",
    "Time of one attempt that reached the dependency, whatever its outcome.",
    ["dependency"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_FLIGHT = Gauge(
    "storefront_dependency_calls_in_flight",
    "Calls holding a bulkhead slot right now.",
    ["dependency"],
    multiprocess_mode="livesum",
)


def set_state(dependency: str, state: str) -> None:
    BREAKER_STATE.labels(dependency=dependency).set(STATE_VALUES.get(state, 0))


def record_call(dependency: str, outcome: str) -> None:
    CALLS.labels(dependency=dependency, outcome=outcome).inc()


def record_failure(dependency: str, error: BaseException) -> None:
    FAILURES.labels(dependency=dependency, error=type(error).__name__).inc()


def record_retry(dependency: str) -> None:
    RETRIES.labels(dependency=dependency).inc()


def observe_duration(dependency: str, seconds: float) -> None:
    DURATION.labels(dependency=dependency).observe(seconds)


def in_flight(dependency: str) -> Gauge:
    return IN_FLIGHT.labels(dependency=dependency)
