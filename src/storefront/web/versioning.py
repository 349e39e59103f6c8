"""API versions at the edge (decision 0143, docs/api-versioning.md): every v1 response whose
route has a v2 successor (the same method and path under /api/v2) says so, and every v1
request is counted by route, so operators see who still calls v1 before its sunset.

- ``Deprecation: @<epoch seconds>`` (RFC 9745), from ``STOREFRONT_API__V1_DEPRECATED_AT``;
- ``Sunset: <HTTP-date>`` (RFC 8594), from ``STOREFRONT_API__V1_SUNSET_AT``;
- ``Link: </api/v2/...>; rel="successor-version"`` (RFC 5829), the same path under v2;
  except on v1's paginated listings, whose ``Link`` header is their ``rel="next"`` alone
  (v1 clients parse it as one link, and its absence as the last page: v1 stays as it was).

Pure ASGI, matching paths itself against the route templates (read once from the app's
routes), so the answers of the cached-read fast path, which skip routing, carry them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import Counter
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.web.pagination import page_params, seq_page_params
from storefront.web.paths import API_PREFIX, API_V2_PREFIX

V1_REQUESTS = Counter(
    "storefront_api_v1_requests",
    "Requests to API v1, by method and route template, and whether v2 has a successor "
    "(docs/api-versioning.md).",
    ["method", "route", "successor"],
)


class _Route:
    __slots__ = ("linked_pages", "pattern", "successor_methods", "template")

    def __init__(self, template: str, successor_methods: set[str], linked_pages: bool) -> None:
        self.template = template
        self.pattern: re.Pattern[str] = compile_path(template)[0]
        self.successor_methods = successor_methods
        self.linked_pages = linked_pages  # its GET pages carry Link: rel="next"


def _paginates(dependant: Dependant) -> bool:
    if dependant.call in (page_params, seq_page_params):
        return True
    return any(_paginates(d) for d in dependant.dependencies)


def v1_routes(routes: Sequence[BaseRoute]) -> list[_Route]:
    """Each v1 route template, the methods v2 serves too, and whether it pages by Link."""
    by_template: dict[str, set[str]] = {}
    paged: set[str] = set()
    for route in iter_route_contexts(routes):  # each mounted route with its full path
        path, methods = str(route.path), set(route.methods or ())
        if not isinstance(route.original_route, APIRoute) or not methods:
            continue
        by_template.setdefault(path, set()).update(methods)
        if "GET" in methods and _paginates(route.dependant):
            paged.add(path)
    out = []
    for template, methods in by_template.items():
        if template.startswith(API_PREFIX + "/"):
            successor = API_V2_PREFIX + template[len(API_PREFIX) :]
            out.append(
                _Route(template, methods & by_template.get(successor, set()), template in paged)
            )
    return out


DEPRECATION_HEADERS: dict[str, dict[str, object]] = {
    "Deprecation": {
        "description": "RFC 9745: this operation is deprecated since this date (`@` and Unix "
        "seconds); its successor is the same path under /api/v2 (docs/api-versioning.md)",
        "schema": {"type": "string", "examples": ["@1796601600"]},
    },
    "Sunset": {
        "description": "RFC 8594: when this operation may stop working (an HTTP-date)",
        "schema": {"type": "string", "examples": ["Fri, 31 Dec 2027 00:00:00 GMT"]},
    },
}
SUCCESSOR_HEADER: dict[str, object] = {
    "description": 'RFC 8288/5829: `</api/v2/...>; rel="successor-version"`, the same '
    "operation in API v2",
    "schema": {"type": "string"},
}


def document_deprecations(app: FastAPI, routes: Sequence[_Route]) -> None:
    """The headers this middleware adds, in the OpenAPI document of each v1 operation with a
    successor (every response; ``Link`` except on the paginated listings, whose ``Link`` is
    their next page): an additive change to v1's documented contract."""
    build: Callable[[], dict[str, object]] = app.openapi
    by_template = {route.template: route for route in routes}

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        paths = schema.get("paths")
        components = schema.setdefault("components", {})
        if not isinstance(paths, dict) or not isinstance(components, dict):
            return schema
        components.setdefault("headers", {}).update(
            {**DEPRECATION_HEADERS, "SuccessorLink": SUCCESSOR_HEADER}
        )
        for template, item in paths.items():
            route = by_template.get(template)
            if route is None:
                continue
            for method, operation in item.items():
                if method.upper() not in route.successor_methods:
                    continue
                link = not (route.linked_pages and method == "get")
                for response in operation.get("responses", {}).values():
                    headers = response.setdefault("headers", {})
                    for name in DEPRECATION_HEADERS:
                        headers[name] = {"$ref": f"#/components/headers/{name}"}
                    if link:
                        headers["Link"] = {"$ref": "#/components/headers/SuccessorLink"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def deprecation_value(when: datetime) -> str:
    """RFC 9745: a structured-field Date, ``@`` and the Unix time in seconds."""
    return f"@{int(when.timestamp())}"


def sunset_value(when: datetime) -> str:
    """RFC 8594: an HTTP-date (IMF-fixdate, GMT)."""
    return format_datetime(when, usegmt=True)


class VersioningMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: list[_Route],
        deprecated_at: datetime,
        sunset_at: datetime,
        record_metrics: bool = True,
    ) -> None:
        self.app = app
        self.routes = routes
        self.deprecation = deprecation_value(deprecated_at).encode()
        self.sunset = sunset_value(sunset_at).encode()
        self.record_metrics = record_metrics

    def _match(self, path: str) -> _Route | None:
        for route in self.routes:
            if route.pattern.match(path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        route = self._match(path)
        method = scope.get("method", "")
        if route is None:  # no such route: a 404 problem, not counted by a raw path
            await self.app(scope, receive, send)
            return
        has_successor = method in route.successor_methods or (
            method == "HEAD" and "GET" in route.successor_methods
        )
        if self.record_metrics:
            V1_REQUESTS.labels(method, route.template, str(has_successor).lower()).inc()
        if not has_successor:
            await self.app(scope, receive, send)
            return
        # from the path as sent (percent-encoded): the decoded one may hold characters that
        # no header can carry
        raw = scope.get("raw_path") or b""
        if not raw.startswith(API_PREFIX.encode() + b"/"):
            raw = quote(path).encode()
        successor = API_V2_PREFIX.encode() + raw[len(API_PREFIX) :]
        link = not (route.linked_pages and method in ("GET", "HEAD"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"deprecation", self.deprecation), (b"sunset", self.sunset)]
                if link:
                    headers.append((b"link", b"<" + successor + b'>; rel="successor-version"'))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
