"""API protection wired into the app (issue 4): which routes get which budget, and the order
of the protection middlewares. The mechanisms live in platform/ratelimit.py and
platform/http/limits.py; this module only knows the routes.

Request path through these layers (outermost first; request id, security headers and CORS
wrap them all, see app.py):

    LoadShedding -> BodyLimit -> RateLimit -> Deadline -> router (+ json_body_guard)

Shedding comes first: the cheapest refusal, taken before anything else is spent. The body
limit wraps the rate limiter so even the small sign-in bodies it reads are bounded. The
deadline is innermost so it times the application's work, not a 429 or a 413.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.types import Scope

from storefront.platform.http.limits import (
    EXEMPT_FROM_SHEDDING,
    BodyLimitMiddleware,
    DeadlineMiddleware,
    LoadSheddingMiddleware,
)
from storefront.platform.ratelimit import (
    DistributedRateLimiter,
    Policies,
    RateLimitMiddleware,
    Rule,
)
from storefront.platform.runtime import Runtime
from storefront.platform.security.tokens import TokenService
from storefront.settings import Settings

API = "/api/v1"
NOT_RATE_LIMITED = (*EXEMPT_FROM_SHEDDING, "/docs", "/static/", "/openapi.json")

# Routes with their own budgets (everything else: per user when signed in, else per address).
RULES = (
    Rule("POST", f"{API}/auth/login", "auth", account_field="email"),
    Rule("POST", f"{API}/auth/token", "auth", account_field="username"),
    Rule("POST", f"{API}/auth/register", "auth", account_field="email"),
    Rule("POST", f"{API}/auth/mfa/verify", "auth", account_field="mfa_token"),
    Rule("POST", f"{API}/auth/password", "auth"),
    Rule("POST", f"{API}/shops/{{shop_id}}/products/bulk", "expensive"),
    Rule("POST", f"{API}/users/me/exports", "expensive"),
    Rule(
        "GET",
        f"{API}/shops/{{shop_id}}/orders",
        "expensive",
        accept=("application/x-ndjson", "text/csv"),
    ),
)
BULK_PATHS = (f"{API}/shops/{{shop_id}}/products/bulk",)


def build_rate_limiter(runtime: Runtime, settings: Settings) -> DistributedRateLimiter:
    p = settings.protection
    return DistributedRateLimiter(
        runtime.redis,
        prefix=runtime.redis_prefix,
        strategy=p.rate_limit_strategy,
        timeout_seconds=p.redis_timeout_seconds,
        retry_seconds=p.redis_retry_seconds,
    )


def _resources(scope: Scope) -> tuple[DistributedRateLimiter, TokenService, Sequence[Any]]:
    runtime: Runtime = scope["app"].state.runtime
    if runtime.rate_limiter is None:  # a runtime built without the lifespan (never in serving)
        runtime.rate_limiter = build_rate_limiter(runtime, scope["app"].state.settings)
    return runtime.rate_limiter, runtime.tokens, runtime.trusted_proxies


def install_protection(app: FastAPI, settings: Settings) -> None:
    """Add the protection middlewares; call before CORS, security headers and request id."""
    p = settings.protection
    # add_middleware: the last added is the outermost
    app.add_middleware(DeadlineMiddleware, timeout_seconds=p.request_timeout_seconds)
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            policies=Policies.parse(
                anonymous=p.anonymous_rate,
                user=p.user_rate,
                auth=p.auth_rate,
                auth_account=p.auth_account_rate,
                expensive=p.expensive_rate,
            ),
            rules=RULES,
            resources=_resources,
            exempt_prefixes=NOT_RATE_LIMITED,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=p.max_body_bytes,
        overrides=[(path, p.max_bulk_body_bytes) for path in BULK_PATHS],
    )
    app.add_middleware(
        LoadSheddingMiddleware,
        max_in_flight=p.max_in_flight,
        retry_after_seconds=p.shed_retry_after_seconds,
    )
