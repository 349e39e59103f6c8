"""Error tracking with sentry-sdk, on only when a DSN is configured.

Unhandled errors are reported from the one place that sees them all (the 500 problem
handler), with the request (method, URL without query string, safe headers), the release,
the environment, the request id and the OpenTelemetry trace context. Personal data is
scrubbed twice: the SDK collects no user data, bodies or local variables, and
``before_send`` runs the same redaction as the logs over the whole event.
"""

from __future__ import annotations

import sys
from typing import Any

from starlette.requests import Request

from storefront.telemetry.logging import is_sensitive_key, redact

_SAFE_HEADERS = frozenset({"user-agent", "content-type", "accept", "x-request-id", "traceparent"})


def _before_send(event: Any, _hint: Any) -> Any:
    return redact(event)


def init_sentry(
    dsn: str, *, release: str, environment: str, traces_sample_rate: float = 0.0
) -> None:
    # imported here: sentry-sdk (and urllib3) load only in processes that have a DSN
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=release,
        environment=environment,
        # no user identity, no bodies, no local variables, no query data (the SDK's
        # successor of send_default_pii=False, stricter)
        data_collection={
            "user_info": False,
            "http_bodies": [],
            "stack_frame_variables": False,
            "database_query_data": False,
        },
        max_request_body_size="never",
        traces_sample_rate=traces_sample_rate or None,
        # the 500 handler reports (with our request id and trace); the automatic ASGI and
        # logging integrations would report the same error again, with less context
        auto_enabling_integrations=False,
        disabled_integrations=[StarletteIntegration, FastApiIntegration, LoggingIntegration],
        before_send=_before_send,
    )


def enabled() -> bool:
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:  # never initialised in this process
        return False
    client = sentry_sdk.get_client()
    return client.is_active() and bool(client.dsn)


def report_exception(request: Request, exc: BaseException) -> str | None:
    """Send one unhandled error to Sentry (a no-op without a DSN); returns the event id."""
    if not enabled():
        return None
    import sentry_sdk

    state = request.scope.get("state", {})
    headers = {k: v for k, v in request.headers.items() if k.lower() in _SAFE_HEADERS}
    with sentry_sdk.new_scope() as scope:
        route = state.get("route_template")
        if route:
            scope.set_tag("route", route)
            scope.set_transaction_name(f"{request.method} {route}")
        if state.get("request_id"):
            scope.set_tag("request_id", state["request_id"])
        trace_id = state.get("trace_id")
        if trace_id:
            scope.set_context(
                "trace", {"trace_id": trace_id, "span_id": state.get("span_id") or trace_id[16:]}
            )
        request_data = {
            "method": request.method,
            "url": str(request.url.replace(query="")),
            "headers": {k: v for k, v in headers.items() if not is_sensitive_key(k)},
        }

        def add_request(event: Any, _hint: Any) -> Any:
            event["request"] = request_data
            return event

        scope.add_event_processor(add_request)
        return sentry_sdk.capture_exception(exc)
