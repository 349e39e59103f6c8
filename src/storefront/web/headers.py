"""A bound on request headers at the application (decision 0094).

The server bounds the bytes of a request head before anything is buffered without limit
(``storefront serve`` runs web/edge_server.py's protocol, decision 0192); this middleware
adds what the server does not bound, the *number* of header fields, and checks the size
again for hosts that run the app under another server. Either refusal is
``431 Request Header Fields Too Large`` as a problem document.

A request with both ``Content-Length`` and ``Transfer-Encoding`` is refused with a 400
problem and ``Connection: close`` (decision 0189): the server frames its body by
Transfer-Encoding, a proxy in front may have used Content-Length, and what one reads as body
the other reads as the next request (request smuggling, RFC 9112 section 6.1). Closing the
connection drops whatever followed on it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.web.problems import problem_response


class HeaderLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_headers: int, max_bytes: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            detail = None
            if len(headers) > self.max_headers:
                detail = f"{len(headers)} header fields; at most {self.max_headers} are accepted"
            elif sum(len(name) + len(value) for name, value in headers) > self.max_bytes:
                detail = f"The header fields exceed {self.max_bytes} bytes"
            if detail is not None:
                response = problem_response(
                    Request(scope), 431, slug="headers-too-large", detail=detail
                )
                await response(scope, receive, send)
                return
            names = {name for name, _ in headers}
            if b"transfer-encoding" in names and b"content-length" in names:
                response = problem_response(
                    Request(scope),
                    400,
                    slug="ambiguous-framing",
                    detail="Content-Length and Transfer-Encoding together: send one of them",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
