"""Response compression negotiated by ``Accept-Encoding`` (RFC 9110 §12.5.3): zstd, br or
gzip, a pure ASGI middleware.

Only whole bodies are compressed: a response sent in one message (every JSON, HAL, msgpack
or problem answer) of at least ``MIN_SIZE`` bytes and a compressible media type. A streamed
response (the order exports: several body messages) passes as it is, so its first bytes
are never held back and its small chunks never pay a compressor's framing. The client's
q-values decide; among equally acceptable codings the server prefers zstd, then br, then
gzip. ``identity;q=0`` is not honoured by refusing (an uncompressed answer is always
acceptable in practice, RFC 9110 allows it). A compressed answer carries
``Content-Encoding``, its new ``Content-Length`` and ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import gzip

import brotli
import zstandard
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIN_SIZE = 1024  # bytes; below this the framing costs more than it saves
# the server's preference among equally acceptable codings
CODINGS = ("zstd", "br", "gzip")
_COMPRESSIBLE_EXACT = frozenset(
    {"application/json", "application/msgpack", "application/javascript", "application/xml"}
)


def compressible(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _COMPRESSIBLE_EXACT
        or media.endswith(("+json", "+xml"))
    )


def choose(accept_encoding: str | None) -> str | None:
    """The coding to use for ``accept_encoding``, or None for identity."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[name] = q
    star = weights.get("*")
    best: tuple[float, int] | None = None
    chosen: str | None = None
    for rank, coding in enumerate(CODINGS):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0 and (best is None or (q, -rank) > best):
            best, chosen = (q, -rank), coding
    return chosen


def compress(body: bytes, coding: str) -> bytes:
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(body)
    if coding == "br":
        return bytes(brotli.compress(body, quality=4))
    return gzip.compress(body, compresslevel=6)


class CompressionMiddleware:
    def __init__(self, app: ASGIApp, *, min_size: int = MIN_SIZE) -> None:
        self.app = app
        self.min_size = min_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = choose(Headers(scope=scope).get("accept-encoding"))
        if coding is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passing = False  # decided: send everything as it comes

        async def wrapped(message: Message) -> None:
            nonlocal start, passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if "content-encoding" in headers or not compressible(
                    headers.get("content-type", "")
                ):
                    passing = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body = message.get("body", b"")
            if message.get("more_body", False) or len(body) < self.min_size:
                # streamed, or too small: as it is
                passing = True
                await send(start)
                await send(message)
                return
            compressed = compress(body, coding)
            headers = MutableHeaders(raw=list(start.get("headers", [])))
            headers["Content-Encoding"] = coding
            headers["Content-Length"] = str(len(compressed))
            headers.add_vary_header("Accept-Encoding")
            passing = True
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": compressed, "more_body": False})

        await self.app(scope, receive, wrapped)
