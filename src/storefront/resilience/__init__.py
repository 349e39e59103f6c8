"""Resilience around every outgoing call (decision 0138): one circuit breaker per named
dependency (purgatory; state shared through Redis when it is configured, in the process
otherwise), a bulkhead (bounded concurrent calls), a deadline per attempt, metrics, and
jittered retries (stamina) for idempotent calls only.

The process's :class:`Resilience` is ``resources.resilience``. Guarding a call is one line::

    async with resources.resilience.guard("payments") as policy:
        intent = await client.payment_intents.create_async(...)

    # or, with retries when the call is idempotent (same Idempotency-Key, a GET...):
    intent = await resources.resilience.call(
        "payments", lambda: client.payment_intents.retrieve_async(pi), idempotent=True
    )

``policy.connect_timeout_seconds`` is for the client's connect timeout; the guard itself
cancels the attempt past ``policy.timeout_seconds``. ``exclude=(CardError,)`` names errors
that mean the dependency answered (they do not count against the circuit); ``key=host``
gives a dependency a circuit per target (webhook receivers). While the circuit is open, or
the bulkhead stays full for ``max_wait_seconds``, the guard raises
:class:`DependencyUnavailable` (:class:`CircuitOpen`, :class:`BulkheadFull`) before anything
is sent: a 503 problem ``/problems/dependency-unavailable`` with ``Retry-After``.
Settings: ``STOREFRONT_RESILIENCE__*``, per dependency
``STOREFRONT_RESILIENCE__DEPENDENCIES__<NAME>__*`` (settings.ResilienceSettings).
"""

from storefront.resilience.errors import BulkheadFull, CircuitOpen, DependencyUnavailable
from storefront.resilience.guard import TRANSIENT, Resilience
from storefront.resilience.policy import Policy

__all__ = [
    "TRANSIENT",
    "BulkheadFull",
    "CircuitOpen",
    "DependencyUnavailable",
    "Policy",
    "Resilience",
]
