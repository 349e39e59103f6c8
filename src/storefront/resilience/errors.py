"""The typed refusal of a guarded call: a 503 problem with ``Retry-After`` (web/problems.py
maps every :class:`~storefront.kit.errors.DomainError`)."""

from __future__ import annotations

from storefront.kit.errors import DomainError


class DependencyUnavailable(DomainError):
    """A dependency is not being called right now: its circuit is open, or every slot of its
    bulkhead is taken. Nothing was sent to it; retry after ``retry_after`` seconds."""

    status = 503
    slug = "dependency-unavailable"
    title = "A service this request needs is unavailable"

    def __init__(self, detail: str, *, dependency: str, reason: str, retry_after: int) -> None:
        retry_after = max(1, retry_after)
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
        self.dependency = dependency
        self.reason = reason
        self.retry_after = retry_after
        self.extra.update(dependency=dependency, reason=reason, retry_after=retry_after)


class CircuitOpen(DependencyUnavailable):
    """The dependency's circuit breaker is open (or a probe is already under way)."""

    def __init__(self, dependency: str, *, retry_after: int) -> None:
        super().__init__(
            f"{dependency} has failed repeatedly and is not being called; retry later.",
            dependency=dependency,
            reason="circuit-open",
            retry_after=retry_after,
        )


class BulkheadFull(DependencyUnavailable):
    """Every concurrent-call slot of the dependency stayed taken for the bounded wait."""

    def __init__(self, dependency: str, *, retry_after: int = 1) -> None:
        super().__init__(
            f"Too many calls to {dependency} are in flight; retry later.",
            dependency=dependency,
            reason="busy",
            retry_after=retry_after,
        )
