"""What the HTTP edge does for a route, declared where the route is defined.

A route states its rate-limit budget, its body limit and its cache-hit fast path with
``route_policy``, next to its router decorator::

    @router.post("/auth/login", ...)
    @route_policy(rate="auth", account_field="email")
    async def login(...): ...

The decorator files a typed ``RoutePolicy`` on the endpoint function and returns the function
unchanged. When the app is built, the middleware read the policies from ``app.routes``, with
the full path each route is mounted at:

- ``rate_rules``: the rate limiter's ``Rule`` per route method (web/ratelimit.py); a route
  without a ``rate`` gets the default budget (per user when signed in, else per address);
- ``body_limits``: the body limit's per-path overrides (web/limits.py);
- ``fast_reads``: the cached reads the cache-hit fast path answers (web/fast_path.py), with
  the query parameters the route itself takes.

So no list of paths is kept apart from the routes; what is not a route of a domain (docs,
static files, liveness) is named in web/paths.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from storefront.web.fast_path import FastRead, Lookup
from storefront.web.ratelimit import Rule

# the RateLimitMiddleware's budgets (``Policies``) a route may take instead of the default:
# sign-in and credentials ("auth"), heavy work ("expensive"), consent changes ("consents"),
# probes and scrapes ("operations", per process and address)
RateBudget = Literal["auth", "expensive", "consents", "operations"]
# the body limits a route may take instead of the default (STOREFRONT_PROTECTION__*)
BodyLimit = Literal["bulk"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., object])
_ATTRIBUTE = "__route_policy__"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """One route's edge policy.

    ``rate``: its budget (see ``Rule`` for ``account_field``, ``account_token``, ``accept``
    and ``offers``, which refine an "auth" or a negotiated budget). ``body``: its body limit,
    for every method on its path. ``cached``: the L1-only lookup that answers a cache hit
    before routing (a GET route only).
    """

    rate: RateBudget | None = None
    account_field: str | None = None
    account_token: str | None = None
    accept: tuple[str, ...] = ()
    offers: tuple[str, ...] = ()
    body: BodyLimit | None = None
    cached: Lookup | None = None

    def __post_init__(self) -> None:
        if self.rate is None and (self.account_field or self.accept or self.offers):
            raise ValueError("account_field, accept and offers refine a rate budget")
        if self.account_token is not None and self.account_field is None:
            raise ValueError("account_token names what account_field holds")


def route_policy(
    *,
    rate: RateBudget | None = None,
    account_field: str | None = None,
    account_token: str | None = None,
    accept: tuple[str, ...] = (),
    offers: tuple[str, ...] = (),
    body: BodyLimit | None = None,
    cached: Lookup | None = None,
) -> Callable[[Endpoint], Endpoint]:
    """Declare the route's edge policy; put it below the router's decorator."""
    policy = RoutePolicy(
        rate=rate,
        account_field=account_field,
        account_token=account_token,
        accept=accept,
        offers=offers,
        body=body,
        cached=cached,
    )

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _ATTRIBUTE, policy)
        return endpoint

    return declare


@dataclass(frozen=True, slots=True)
class Declared:
    """A route as the app mounts it: ``path`` is its full template (the routers' prefixes
    included), ``dependant`` includes the routers' dependencies."""

    path: str
    methods: frozenset[str]
    dependant: Dependant
    policy: RoutePolicy


def declared(routes: Sequence[BaseRoute]) -> list[Declared]:
    """The API routes that declare a policy, in routing order. Walking the mounted routes
    rebuilds each one's effective state (most of create_app's time): do it once per app and
    hand the result to ``rate_rules``, ``body_limits`` and ``fast_reads``."""
    found = []
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        policy = getattr(route.endpoint, _ATTRIBUTE, None)
        if isinstance(policy, RoutePolicy):
            methods = frozenset(route.methods or ())
            found.append(Declared(str(route.path), methods, route.dependant, policy))
    return found


def rate_rules(routes: Sequence[Declared]) -> tuple[Rule, ...]:
    """The rate limiter's rules: one per method of each route with a budget of its own."""
    return tuple(
        Rule(
            method,
            route.path,
            route.policy.rate,
            account_field=route.policy.account_field,
            account_token=route.policy.account_token,
            accept=route.policy.accept,
            offers=route.policy.offers,
        )
        for route in routes
        if route.policy.rate is not None
        for method in sorted(route.methods)
    )


def body_limits(
    routes: Sequence[Declared], limits: Mapping[BodyLimit, int]
) -> list[tuple[str, int]]:
    """The body limit's overrides: each declaring route's path, for every method on it."""
    overrides: dict[str, int] = {}
    for route in routes:
        if route.policy.body is not None:
            overrides.setdefault(route.path, limits[route.policy.body])
    return list(overrides.items())


def fast_reads(routes: Sequence[Declared]) -> list[FastRead]:
    """The cached reads, each with the query parameters its route takes (any other query
    parameter sends the request to the route)."""
    reads = []
    for route in routes:
        if route.policy.cached is None:
            continue
        if route.methods != {"GET"}:
            raise ValueError(f"{route.path}: only a GET route is answered from the cache")
        reads.append(FastRead(route.path, route.policy.cached, _query_names(route.dependant)))
    return reads


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route reads, its dependencies' included."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)
