"""API protection wired into the app: the order of the protection middlewares, and
the budgets and body limits the routes declare (``route_policy``), read from ``app.routes``.
The mechanisms live in web/ratelimit.py and web/limits.py.

Request path through these layers (outermost first; request id, security headers and CORS
wrap them all, see app.py):

    HeaderLimit -> LoadShedding -> BodyLimit -> RateLimit -> Deadline -> router

Shedding comes first (after a count of header fields): the cheapest refusal, taken before
anything else is spent. The body limit wraps the rate limiter so even the small sign-in
bodies it reads are bounded. The deadline is innermost so it times the application's work,
not a 429 or a 413.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.types import Scope

from storefront.auth.devices import DeviceCookies
from storefront.auth.tokens import TokenService
from storefront.infra.ratelimit import DistributedRateLimiter
from storefront.resources import Resources
from storefront.settings import Settings
from storefront.web.headers import HeaderLimitMiddleware
from storefront.web.limits import (
    BodyLimitMiddleware,
    DeadlineMiddleware,
    LoadSheddingMiddleware,
)
from storefront.web.paths import NOT_RATE_LIMITED
from storefront.web.ratelimit import Policies, RateLimitMiddleware
from storefront.web.route_policy import Declared, body_limits, rate_rules


def _resources(scope: Scope) -> tuple[DistributedRateLimiter, TokenService, Sequence[Any]]:
    resources: Resources = scope["app"].state.resources
    return resources.rate_limiter, resources.tokens, resources.trusted_proxies


def _devices(scope: Scope) -> DeviceCookies:
    resources: Resources = scope["app"].state.resources
    return resources.security.devices


def install_protection(app: FastAPI, settings: Settings, routes: Sequence[Declared]) -> None:
    """Add the protection middlewares, with the policies ``routes`` declare
    (``route_policy.declared(app.routes)``, once every router is included); call before
    CORS, security headers and request id."""
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
                operations=p.operations_rate,
                consents=p.consent_rate,
            ),
            rules=rate_rules(routes),
            resources=_resources,
            exempt_prefixes=NOT_RATE_LIMITED,
            devices=_devices,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=p.max_body_bytes,
        overrides=body_limits(routes, {"bulk": p.max_bulk_body_bytes}),
    )
    app.add_middleware(
        LoadSheddingMiddleware,
        max_in_flight=p.max_in_flight,
        retry_after_seconds=p.shed_retry_after_seconds,
    )
    # outermost of these: too many header fields is refused before anything else runs
    app.add_middleware(
        HeaderLimitMiddleware, max_headers=p.max_headers, max_bytes=p.max_header_bytes
    )
