"""Pure ASGI middleware: RED metrics, requests in flight, and one access log line per request."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.platform.observability import metrics
from storefront.platform.observability.logging import begin_request, get_logger
from storefront.platform.observability.routes import route_template
from storefront.platform.observability.tracing import current_ids

QUIET_ROUTES = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
access_log = get_logger("storefront.access")


class ObservabilityMiddleware:
    """Runs inside the tracing middleware, so the trace id is known, and outside everything
    that may answer early (rate limits, body limits), so those answers are counted too."""

    def __init__(self, app: ASGIApp, *, record_metrics: bool = True) -> None:
        self.app = app
        self.record_metrics = record_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        holder = begin_request(state.get("request_id"))
        ids = current_ids()
        if ids:
            state["trace_id"], state["span_id"] = ids
            holder["trace_id"] = ids[0]
        status = 500  # if the app raises before answering, the client gets a 500
        if self.record_metrics:
            metrics.HTTP_IN_FLIGHT.inc()

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            duration = time.perf_counter() - started
            method = scope.get("method", "")
            route = route_template(scope)
            state["route_template"] = route
            if self.record_metrics:
                metrics.HTTP_IN_FLIGHT.dec()
                labels: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "status_class": metrics.status_class(status),
                }
                metrics.HTTP_REQUESTS.labels(**labels).inc()
                metrics.HTTP_DURATION.labels(**labels).observe(duration)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else logging.INFO
            access_log.log(
                level,
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 2),
                user_id=holder.get("user_id"),
            )
