"""Typed errors the domains raise; web/problems.py maps them to RFC 9457."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Gone(DomainError):
    status = 410
    slug = "gone"
    title = "Gone"


class InsufficientStock(Conflict):
    slug = "insufficient-stock"
    title = "Not enough stock"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "Transition not allowed"


class Unauthenticated(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        challenge = "Bearer" if error is None else f'Bearer error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class PreconditionFailed(DomainError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class UnprocessableEntity(DomainError):
    status = 422
    slug = "unprocessable-entity"
    title = "Unprocessable entity"


class IdempotencyKeyMissing(DomainError):
    status = 400
    slug = "idempotency-key-missing"
    title = "Idempotency-Key header required"


class IdempotencyKeyReused(UnprocessableEntity):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class IdempotencyInFlight(Conflict):
    slug = "idempotency-in-flight"
    title = "A request with this Idempotency-Key is still being processed"


class RecentAuthRequired(Unauthenticated):
    """A sensitive change needs a recent sign-in (RFC 9470 step-up)."""

    slug = "recent-auth-required"
    title = "A recent sign-in is required"

    def __init__(self, detail: str, *, max_age_seconds: int) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_user_authentication", max_age={max_age_seconds}'
        )
        self.extra["max_age"] = max_age_seconds


class WeakPassword(UnprocessableEntity):
    slug = "weak-password"
    title = "Password not accepted"


class SignInThrottled(DomainError):
    status = 429
    slug = "sign-in-throttled"
    title = "Too many failed attempts"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.extra["retry_after"] = max(1, retry_after)


class SecurityBackendUnavailable(DomainError):
    """A store that security checks depend on (Redis) is down: fail closed."""

    status = 503
    slug = "security-backend-unavailable"
    title = "Temporarily unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


class PasswordHashingBusy(DomainError):
    """Every password-hashing slot is taken and the short waiting line is full: refused at
    once, before anything changed (decision 0134). 503, not 429: the server is out of
    capacity, not this client over its allowance."""

    status = 503
    slug = "password-hashing-busy"
    title = "Too busy to check passwords"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.extra["retry_after"] = max(1, retry_after)


class NotAcceptable(DomainError):
    """No representation the client accepts (the Accept header) is offered."""

    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"
