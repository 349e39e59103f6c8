"""CORS from an explicit origin list (Starlette's middleware), with refusals kept clean.

Starlette answers a refused preflight with a text/plain 400 that still lists the allowed
methods and headers, and adds Access-Control-Expose-Headers to requests from any origin.
Here a refused preflight is a problem+json 400 without any CORS header, and a request from a
foreign origin gets none either (only ``Vary: Origin``, for caches): it learns nothing.
A request without ``Origin`` (probes, scrapes, server-to-server calls) is no CORS request:
Starlette 1.10+ still routes it through ``simple_response``, which passes it on untouched
(``Vary: Origin`` aside, since the answer to the same URL differs with an allowed origin).
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from storefront.web.problems import problem_response

# Headers a browser script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = [
    "Deprecation",  # v1 routes with a v2 successor (decision 0143)
    "ETag",
    "Idempotent-Replayed",  # a keyed write answered from its first run (orders, payments)
    "Link",
    "Location",
    "X-Request-ID",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "Storefront-LSN",  # read-your-writes (decision 0150)
    "Sunset",
]


class StrictCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        headers = {"Vary": "Origin"}
        if self.is_allowed_origin(origin=request_headers["origin"]):
            headers["Access-Control-Allow-Origin"] = request_headers["origin"]
        return problem_response(None, 400, slug="cors-refused", detail=reason, headers=headers)

    async def simple_response(
        self, scope: Scope, receive: Receive, send: Send, request_headers: Headers
    ) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin=origin):
            await super().simple_response(scope, receive, send, request_headers)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_vary)
