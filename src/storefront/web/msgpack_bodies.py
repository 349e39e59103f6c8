"""Request bodies in MessagePack (``Content-Type: application/msgpack``) wherever the API
takes JSON: a pure ASGI middleware turns the document into the same JSON before routing, so
every route, its validation and its JSON body guard (web/limits.py) see one format.

Runs inside the API protection (the body limit has counted the bytes as sent). A body that
is not one MessagePack document, or that JSON cannot hold (binary, non-string map keys,
extension types), is a 400 problem. Responses in MessagePack are the representations' own
business (v2: web/hal.py)."""

from __future__ import annotations

import msgpack
import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.web.problems import problem_response

MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)


def is_msgpack(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in MSGPACK_TYPES


def to_json(body: bytes) -> bytes:
    """The JSON of one MessagePack document; ValueError if there is none or JSON cannot
    hold it."""
    try:
        document = msgpack.unpackb(body, raw=False, strict_map_key=True, timestamp=0)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    try:
        return orjson.dumps(document)
    except TypeError as exc:  # bytes, extension types
        raise ValueError(f"not representable as JSON: {exc}") from exc


class MsgpackBodiesMiddleware:
    def __init__(self, app: ASGIApp, *, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope.get("path", "").startswith(self.prefixes)
            or not is_msgpack(Headers(scope=scope).get("content-type"))
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = to_json(raw) if raw else b""
        except ValueError as exc:
            response = problem_response(
                Request(scope),
                400,
                detail=f"The body is not one MessagePack document JSON can hold: {exc}"[:300],
            )
            await response(scope, receive, send)
            return
        headers = [
            (k, v)
            for k, v in scope.get("headers", [])
            if k not in (b"content-type", b"content-length")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)
