"""OpenTelemetry tracing: one server span per HTTP request, child spans for SQL and Redis.

The server span is FastAPI's own (``fastapi_telemetry``); SQL and Redis spans come from the
OpenTelemetry contrib instrumentations, bound to this app's tracer provider.

Export is OTLP over HTTP, configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``...). It is
off unless enabled by settings or an OTLP endpoint is set, so the embedded mode exports
nothing. Even when off, every request still gets a (non-recorded) trace id, so logs and
problem bodies can always be correlated with whatever upstream sent in ``traceparent``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

EXCLUDED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_requested(enabled: bool | None) -> bool:
    """Explicit setting wins; otherwise on exactly when an OTLP endpoint is configured."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if enabled is not None:
        return enabled
    return any(os.environ.get(name) for name in OTLP_ENDPOINT_VARS)


def _sampler(ratio: float) -> Sampler | None:
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG itself
    return ParentBased(TraceIdRatioBased(ratio))


def create_tracer_provider(
    *,
    enabled: bool,
    sample_ratio: float,
    version: str,
    environment: str,
    processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """A provider for one app. Disabled: samples nothing (ids still minted), exports nothing."""
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "storefront"),
            SERVICE_VERSION: version,
            "deployment.environment.name": environment,
        }
    )
    if not enabled:
        return TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    provider = TracerProvider(resource=resource, sampler=_sampler(sample_ratio))
    for processor in processors or ():
        provider.add_span_processor(processor)
    if any(os.environ.get(name) for name in OTLP_ENDPOINT_VARS):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # the first enabled app in a process also serves code that uses the global API
        trace.set_tracer_provider(provider)
    return provider


def excluded(scope: MutableMapping[str, Any]) -> bool:
    """Probes and scrapes are never traced: they would drown the traces that matter."""
    return scope.get("path") in EXCLUDED_PATHS


def fastapi_telemetry(provider: TracerProvider) -> dict[str, Any]:
    """FastAPI's built-in OpenTelemetry layer, as our server span: it wraps the whole app (so
    even the 500 handler runs inside the span), names the span ``METHOD /route/{template}``
    once routing chose a route, and opens no per-message receive/send spans. Its OTel
    metrics and logs stay off: metrics are Prometheus', logs are structlog's."""
    return {
        "tracer_provider": provider,
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": excluded,
    }


def instrument_engine(engine: AsyncEngine, provider: TracerProvider) -> None:
    """A child span per SQL statement (statement text without parameters)."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeterProvider

    tracer = trace.get_tracer("storefront.sql", tracer_provider=provider)
    usage = NoOpMeterProvider().get_meter("storefront.sql").create_up_down_counter("unused")
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


def instrument_redis(client: Redis, provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client, tracer_provider=provider)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, hex, or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_id() -> str | None:
    ids = current_ids()
    return ids[0] if ids else None


def get_tracer(name: str) -> trace.Tracer:
    """For job runners and outgoing clients: spans join the request's trace when there is one."""
    return trace.get_tracer(name)
