"""The cache-hit fast path: a pure ASGI layer, innermost of the middleware stack, that answers
a GET for a cached representation straight from this process's L1, before FastAPI's routing,
parameter validation and dependency injection (about half of a hit's cost, decision 0060).

Everything outside it still runs (request id, metrics and the access line, security headers,
load shedding, rate limiting, the deadline). It answers only when it is sure to give the
same response the route would: a path matching the route's template whose parameters the
route's ``lookup`` accepts (path and, for routes that take them, query parameters: each at
most once, in the form the route's validation accepts), at most one ``If-None-Match`` of the
route's allowed length, and an L1 hit under the current generations (``ResponseCache.peek``). In
every other case (a miss, a malformed id, Redis down...) the request goes on unchanged and
the route answers it, counting the miss.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.cache.response_cache import Entry
from storefront.resources import Resources
from storefront.web.cached import MAX_CONDITION_LENGTH, cached_response

# (the entry and extra response headers) or None: the route answers
Hit = tuple[Entry, Mapping[str, str]]
Lookup = Callable[[Resources, Mapping[str, str], Scope], Awaitable[Hit | None]]


@dataclass(frozen=True)
class FastRead:
    """A cached GET route: its full path template and the L1-only lookup of its entry,
    given the raw path and query parameters (None when they are not what the route
    accepts). ``query``: the query parameters the route takes; any other means no.
    Built from the routes' declarations (``route_policy.fast_reads``)."""

    template: str
    lookup: Lookup
    query: frozenset[str] = field(default_factory=frozenset)

    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


def mark_route(scope: Scope, template: str) -> None:
    """What FastAPI records once routing chose a route (the metrics' route label, the
    server span's name and ``http.route``), for a request answered before its routing."""
    telemetry: Any = scope.get("fastapi.telemetry")
    if telemetry is None or not hasattr(telemetry, "route"):
        return
    telemetry.route = template
    span = getattr(telemetry, "span", None)
    if span is not None:
        span.set_attribute("http.route", template)
        span.update_name(f"{getattr(telemetry, 'span_method', 'GET')} {template}")


class CachedReadFastPath:
    def __init__(self, app: ASGIApp, *, routes: Sequence[FastRead]) -> None:
        self.app = app
        self.routes = [(route.pattern(), route) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for pattern, route in self.routes:
                match = pattern.match(scope["path"])
                if match is not None:
                    params = _params(match.groupdict(), scope["query_string"], route.query)
                    if params is not None and await self._answer(
                        scope, receive, send, route, params
                    ):
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, route: FastRead, params: dict[str, str]
    ) -> bool:
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if if_none_match is not None or len(value) > MAX_CONDITION_LENGTH:
                    return False  # repeated or too long: the route decides
                if_none_match = value.decode("latin-1")
        resources: Resources | None = getattr(scope["app"].state, "resources", None)
        if resources is None:
            return False
        hit = await route.lookup(resources, params, scope)
        if hit is None:
            return False
        entry, headers = hit
        mark_route(scope, route.template)
        response = cached_response(entry, "hit-l1", if_none_match, headers=headers)
        await response(scope, receive, send)
        return True


def _params(
    path: dict[str, str], query_string: bytes, allowed: frozenset[str]
) -> dict[str, str] | None:
    """Path and query parameters by name; None for a query the route may read otherwise
    (a name it does not take, or one given twice)."""
    if not query_string:
        return path
    if not allowed:
        return None
    params = dict(path)
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in allowed or name in params:
            return None
        params[name] = value
    return params
