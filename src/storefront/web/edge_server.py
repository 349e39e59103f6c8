"""The HTTP/1.1 protocol `storefront serve` runs: uvicorn's httptools protocol (llhttp, in C)
with the edge guarantees the server itself must give (decision 0192).

- **A bounded request head** (decision 0094). llhttp has no bound of its own, and httptools
  keeps a header's value until it is whole, so the bound counts the bytes *received* while a
  head is incomplete: past ``STOREFRONT_PROTECTION__MAX_HEADER_BYTES`` the connection gets a
  ``431`` problem and is closed, having buffered at most the bound plus one read. A head that
  arrives whole in one read is measured exactly when it is complete, before the app runs.
- **A deadline on every request head** (slowloris): each head must be complete within
  ``STOREFRONT_PROTECTION__HEADER_TIMEOUT_SECONDS`` of the connection opening or of the
  previous response ending, else the connection is closed. The body is the deadline
  middleware's business, not this one's.
- **No ambiguous framing** (decision 0189): llhttp refuses a request with both
  ``Content-Length`` and ``Transfer-Encoding`` while parsing its head, so what follows is never
  parsed as a request; the client gets the ``400 ambiguous-framing`` problem the application
  gives for it under other servers (web/headers.py), and the connection is closed.
- Any other request that is not HTTP/1.1 gets a ``400`` problem and the connection is closed.

The refusals are problem documents (RFC 9457) with the baseline security headers and a request
id, like the application's, but no request reaches the application for them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from storefront.settings import get_settings
from storefront.web.middleware import security_headers
from storefront.web.problems import problem_response

AMBIGUOUS_FRAMING = "Content-Length and Transfer-Encoding together: send one of them"
# the head's framing beyond its fields: "METHOD SP target SP HTTP/1.1 CRLF", ": " and CRLF per
# field, and the blank line
_LINE_OVERHEAD = len(b"  HTTP/1.1\r\n") + 2
_FIELD_OVERHEAD = 4


class _HeadTooLarge(Exception):
    """Raised by a parser callback: the head is over the bound."""


def refusal(status: int, slug: str, detail: str) -> bytes:
    """A whole response, ``Connection: close``: a problem document with the security
    headers and a fresh request id (the application never saw the request)."""
    response = problem_response(None, status, slug=slug, detail=detail)
    request_id = uuid.uuid4().hex
    headers = [
        *response.raw_headers,
        *((name.lower().encode(), value.encode()) for name, value in security_headers("/").items()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join([*lines, b"\r\n", response.body])


class EdgeHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        protection = get_settings().protection
        self.max_head_bytes = protection.max_header_bytes
        self.head_timeout = protection.header_timeout_seconds
        self._head_deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0  # received since that head began: an upper bound of its size

    # --- the head deadline ---
    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()  # no request yet: nothing to answer

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # the next request's head, unless it is already in (a pipelined request, now started)
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_head_deadline()

    # --- parsing, with the head bounded and every refusal a problem ---
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            text = str(exc)
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_large_head()
            elif "Content-Length" in text and "Transfer-Encoding" in text:
                self._refuse(400, "ambiguous-framing", AMBIGUOUS_FRAMING)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "bad-request", "The request is not valid HTTP/1.1.")
            return
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse_large_head()

    def _refuse_large_head(self) -> None:
        detail = f"The request line and header fields exceed {self.max_head_bytes} bytes"
        self._refuse(431, "headers-too-large", detail)

    def _refuse(self, status: int, slug: str, detail: str) -> None:
        self._cancel_head_deadline()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, slug, detail))
            self.transport.close()

    def on_headers_complete(self) -> None:
        size = len(self.url) + _LINE_OVERHEAD + len(self.parser.get_method())
        size += sum(len(name) + len(value) + _FIELD_OVERHEAD for name, value in self.headers)
        if size > self.max_head_bytes:
            raise _HeadTooLarge
        self._in_head = False
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what follows on the connection is the next request's head
        self._head_bytes = 0
