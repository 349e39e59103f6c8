"""Input limits, load shedding and deadlines: pure ASGI middleware and one router dependency.

- `BodyLimitMiddleware`: 413 problem for a body over the limit, decided from Content-Length
  before the app runs, or while the body streams in (a chunked body is cut off at the limit,
  never read whole).
- `LoadSheddingMiddleware`: a per-process cap on requests in flight; past it a fast 503
  problem with Retry-After instead of queueing until timeouts. Probes and metrics are exempt.
- `DeadlineMiddleware`: a per-request deadline until the response starts; past it the work is
  cancelled (its transaction rolls back, nothing is committed) and the client gets a 504.
- `json_body_guard`: 415 for a JSON route sent anything but JSON; nesting depth and array
  lengths bounded before the schema sees the document; a body the strict parser refuses
  (NaN, Infinity, lone surrogates, not UTF-8) is malformed JSON (422), never unchecked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence

import orjson
from fastapi import Request
from fastapi import params as fastapi_params
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.kit.errors import DomainError
from storefront.web.problems import problem_response

EXEMPT_FROM_SHEDDING = ("/livez", "/readyz", "/healthz", "/metrics")


class ContentTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; the app's own HTTP error
    handler (or this middleware, if it escapes) turns it into a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {limit}-byte limit")


class UnsupportedMediaType(DomainError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class JsonTooComplex(DomainError):
    status = 422
    slug = "json-too-complex"
    title = "JSON document too deeply nested or too long"


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, overrides: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = [(_path_pattern(path), limit) for path, limit in overrides]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.match(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ContentTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except ContentTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            Request(scope),
            413,
            detail=f"The request body is larger than the {limit}-byte limit",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class LoadSheddingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        retry_after_seconds: int = 2,
        exempt_prefixes: tuple[str, ...] = EXEMPT_FROM_SHEDDING,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_seconds)
        self.exempt_prefixes = exempt_prefixes
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = problem_response(
                Request(scope),
                503,
                slug="overloaded",
                title="Server overloaded",
                detail="Too many requests in flight on this server; retry shortly",
                headers={"Retry-After": self.retry_after},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class DeadlineMiddleware:
    def __init__(
        self, app: ASGIApp, *, timeout_seconds: float, exempt_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        started = False

        try:
            async with asyncio.timeout(self.timeout_seconds) as deadline:

                async def send_lifting_deadline(message: Message) -> None:
                    nonlocal started
                    if message["type"] == "http.response.start":
                        # once the answer is on its way (a long export stream), it may finish
                        started = True
                        deadline.reschedule(None)
                    await send(message)

                await self.app(scope, receive, send_lifting_deadline)
        except TimeoutError:
            if started:
                raise
            response = problem_response(
                Request(scope),
                504,
                slug="timeout",
                title="Request deadline exceeded",
                detail=f"The request did not finish within {self.timeout_seconds:g} s; "
                "its work was cancelled and nothing was changed",
            )
            await response(scope, receive, send)


_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


def check_structure(document: object, max_depth: int, max_items: int) -> str | None:
    """What is wrong with a parsed JSON document's shape (too deep, an array too long), or
    None; iterative, so any depth the parser returned is walked."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: list[object] = list(node.values())
        elif isinstance(node, list):
            if len(node) > max_items:
                return f"an array holds {len(node)} items; at most {max_items} are accepted"
            children = node
        else:
            continue
        if depth > max_depth:
            return f"the document nests deeper than {max_depth} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def _invalid_json(exc: orjson.JSONDecodeError) -> RequestValidationError:
    """The answer FastAPI gives to malformed JSON (a 422 ``json_invalid`` error), for a body
    only a lenient parser accepts."""
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
        ]
    )


def json_body_guard(
    *, max_depth: int, max_array_items: int
) -> Callable[[Request], Awaitable[None]]:
    """A router dependency: JSON routes take JSON only, of bounded shape."""

    async def guard(request: Request) -> None:
        route = request.scope.get("route")
        body_field = getattr(route, "body_field", None)
        if body_field is None or isinstance(body_field.field_info, fastapi_params.Form):
            return
        body = await request.body()
        if not body:
            return  # a missing body is the schema's to report (422)
        content_type = request.headers.get("content-type", "")
        if not _JSON_TYPE.match(content_type):
            raise UnsupportedMediaType(
                f"This endpoint takes application/json, not {content_type or 'an untyped body'}"
            )
        try:
            # the strict parse is the one that counts: FastAPI's (Python's json) also takes
            # NaN, Infinity, lone surrogates and UTF-16, none of which is JSON (RFC 8259);
            # whatever this parse refuses is refused, never let through unchecked
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _invalid_json(exc) from None
        problem = check_structure(document, max_depth, max_array_items)
        if problem is not None:
            raise JsonTooComplex(f"The JSON body is refused: {problem}")

    return guard
