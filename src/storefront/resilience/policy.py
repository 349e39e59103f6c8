"""One dependency's resilience settings: the section's defaults with its own overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storefront.settings import ResilienceSettings


@dataclass(frozen=True, slots=True)
class Policy:
    dependency: str
    failure_threshold: int  # failures in a row (closed) that open the circuit
    cool_down_seconds: float  # open this long, then one probe (half-open)
    max_concurrent: int  # calls in flight at once, per process (the bulkhead)
    max_wait_seconds: float  # how long a call waits for a bulkhead slot before refusal
    connect_timeout_seconds: float  # for the client: connecting only
    timeout_seconds: float  # one attempt, end to end (the guard enforces it)
    retry_attempts: int  # attempts in all for an idempotent call (1: no retry)
    retry_initial_seconds: float
    retry_max_seconds: float


def policy_for(
    settings: ResilienceSettings, dependency: str, client: Mapping[str, float] | None = None
) -> Policy:
    """The section's defaults, under the client's own settings (``client``: what the
    dependency's client was configured with, e.g. the webhook client's timeouts), under the
    dependency's overrides in ``settings.dependencies``."""
    own = settings.dependencies.get(dependency)
    values: dict[str, Any] = dict(client or {})
    if own is not None:
        values.update(own.model_dump(exclude_none=True))
    return Policy(
        dependency=dependency,
        failure_threshold=values.get("failure_threshold", settings.failure_threshold),
        cool_down_seconds=values.get("cool_down_seconds", settings.cool_down_seconds),
        max_concurrent=values.get("max_concurrent", settings.max_concurrent),
        max_wait_seconds=values.get("max_wait_seconds", settings.max_wait_seconds),
        connect_timeout_seconds=values.get(
            "connect_timeout_seconds", settings.connect_timeout_seconds
        ),
        timeout_seconds=values.get("timeout_seconds", settings.timeout_seconds),
        retry_attempts=values.get("retry_attempts", settings.retry_attempts),
        retry_initial_seconds=settings.retry_initial_seconds,
        retry_max_seconds=settings.retry_max_seconds,
    )
