"""Pure ASGI middleware (never BaseHTTPMiddleware): request id and baseline security headers."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI runs its own bundled script and an inline initialiser; nothing leaves the origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
DOCS_PREFIXES = ("/docs", "/static/docs")
# GraphiQL (graphql/ide.py): its page (the HTML answer of /graphql) and its assets. Scripts
# and styles from this origin only, no inline script; fonts are data: URLs inside GraphiQL's
# stylesheet; fetch and the subscriptions' WebSocket go to this origin.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; font-src data:; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
GRAPHIQL_PREFIX = "/static/graphiql"
GRAPHIQL_PAGE = "/graphql"


class RequestIdMiddleware:
    """Echo a valid client X-Request-ID or mint one; expose it in scope state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


DEFAULT_HSTS_SECONDS = 63072000


def _csp(path: str) -> str:
    if path.startswith(DOCS_PREFIXES):
        return DOCS_CSP
    if path.startswith(GRAPHIQL_PREFIX):
        return GRAPHIQL_CSP
    return API_CSP


def security_headers(path: str, *, hsts_seconds: int = DEFAULT_HSTS_SECONDS) -> dict[str, str]:
    """The baseline headers for a response to ``path`` (also used for 500s, which Starlette
    sends from outside every user middleware)."""
    return {
        "Strict-Transport-Security": f"max-age={hsts_seconds}; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _csp(path),
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_seconds: int = DEFAULT_HSTS_SECONDS) -> None:
        self.app = app
        self.hsts_seconds = hsts_seconds
        # encoded once: the variants (API, docs, GraphiQL) differ only in their CSP
        self._api = _encoded(security_headers("/", hsts_seconds=hsts_seconds))
        self._docs = _encoded(security_headers(DOCS_PREFIXES[0], hsts_seconds=hsts_seconds))
        self._graphiql = _encoded(security_headers(GRAPHIQL_PREFIX, hsts_seconds=hsts_seconds))
        self._replaced = frozenset(name for name, _ in self._api) | {b"server"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(DOCS_PREFIXES):
            baseline = self._docs
        elif path.startswith(GRAPHIQL_PREFIX):
            baseline = self._graphiql
        else:
            baseline = self._api
        replaced = self._replaced
        # /graphql answers JSON to clients and GraphiQL's HTML page to a browser
        graphiql_page = path == GRAPHIQL_PAGE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # ours win over any the app set; no Server header
                headers = message.get("headers", ())
                kept = [(k, v) for k, v in headers if k.lower() not in replaced]
                chosen = baseline
                if graphiql_page and any(
                    k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers
                ):
                    chosen = self._graphiql
                message["headers"] = kept + chosen
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
