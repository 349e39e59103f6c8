"""Pure ASGI middleware: RED metrics, requests in flight, and one access log line per request."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.infra.replica import principal_key
from storefront.telemetry import metrics
from storefront.telemetry.logging import begin_request, end_request, get_logger
from storefront.telemetry.routes import route_template
from storefront.telemetry.tracing import current_ids

QUIET_ROUTES = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
access_log = get_logger("storefront.access")
_access_logger = logging.getLogger("storefront.access")


class ObservabilityMiddleware:
    """Runs inside the tracing middleware, so the trace id is known, and outside everything
    that may answer early (rate limits, body limits), so those answers are counted too."""

    def __init__(self, app: ASGIApp, *, record_metrics: bool = True) -> None:
        self.app = app
        self.record_metrics = record_metrics
        # the labelled children by (method, route, status class): a bounded set (route
        # templates), looked up once instead of twice per request through the client's lock
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        holder = begin_request(state.get("request_id"))
        # read-your-writes for reads that see no Request (GraphQL resolvers, decision 0150)
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                holder["principal_key"] = principal_key(value.decode("latin-1"))
            elif name == b"storefront-lsn":
                holder["read_after"] = value.decode("latin-1")
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
                lsn = holder.get("write_lsn")
                if lsn is not None:  # read-your-writes (web/deps.py, decision 0150)
                    headers = list(message.get("headers", ()))
                    headers.append((b"storefront-lsn", lsn.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        raised = True
        try:
            await self.app(scope, receive, send_and_watch)
            raised = False
        finally:
            duration = time.perf_counter() - started
            method = scope.get("method", "")
            route = route_template(scope)
            state["route_template"] = route
            if self.record_metrics:
                metrics.HTTP_IN_FLIGHT.dec()
                key = (method, route, metrics.status_class(status))
                series = self._series.get(key)
                if series is None:
                    labels: dict[str, Any] = dict(
                        zip(("method", "route", "status_class"), key, strict=True)
                    )
                    series = (
                        metrics.HTTP_REQUESTS.labels(**labels),
                        metrics.HTTP_DURATION.labels(**labels),
                    )
                    self._series[key] = series
                series[0].inc()
                series[1].observe(duration)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else logging.INFO
            # structlog runs its whole processor chain (timestamp, context, redaction) before
            # the stdlib level check; skip it for a line nobody will write (decision 0060)
            if _access_logger.isEnabledFor(level):
                access_log.log(
                    level,
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(duration * 1000, 2),
                    user_id=holder.get("user_id"),
                )
            # the request is over: nothing this task (or a task it creates) logs from here
            # carries its id (decision 0114). Not when it raised: the 500 handler, outside
            # every middleware, still logs the crash with the request's ids.
            if not raised:
                end_request()
