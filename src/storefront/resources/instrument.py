"""Telemetry wiring: one call at app creation, one when the resources exist, one at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from storefront.infra.outbound import OutboundClient
from storefront.jobs.queue import JobQueue
from storefront.jobs.telemetry import JobTelemetryMiddleware
from storefront.settings import Environment, Settings
from storefront.telemetry import metrics, tracing
from storefront.telemetry.logging import configure_logging
from storefront.telemetry.sentry import init_sentry


@dataclass(slots=True)
class Observability:
    tracer_provider: TracerProvider
    tracing_enabled: bool
    metrics_enabled: bool


def configure_logging_from(settings: Settings) -> None:
    obs = settings.observability
    json_logs = obs.log_format == "json" or (
        obs.log_format == "auto" and settings.environment is Environment.production
    )
    configure_logging(json=json_logs, level=obs.log_level)


def setup_observability(settings: Settings, version: str) -> Observability:
    """Logging, Sentry (with a DSN) and the tracer provider, before the app serves."""
    obs = settings.observability
    configure_logging_from(settings)
    if obs.sentry_dsn is not None:
        init_sentry(
            obs.sentry_dsn.get_secret_value(),
            release=f"storefront@{version}",
            environment=settings.environment.value,
            traces_sample_rate=obs.sentry_traces_sample_rate,
        )
    enabled = tracing.tracing_requested(obs.tracing_enabled)
    provider = tracing.create_tracer_provider(
        enabled=enabled,
        sample_ratio=obs.trace_sample_ratio,
        version=version,
        environment=settings.environment.value,
    )
    return Observability(provider, enabled, obs.metrics_enabled)


def instrument_resources(
    observability: Observability,
    *,
    engine: AsyncEngine,
    redis: Redis | None,
    jobs: JobQueue,
    http: OutboundClient,
) -> None:
    """Pool and query metrics on the engine; SQL, Redis, job and outgoing HTTP spans when
    tracing (called by ``open_resources`` once they exist)."""
    if observability.metrics_enabled:
        metrics.instrument_engine(engine)
    for middleware in jobs.broker.middlewares:
        if isinstance(middleware, JobTelemetryMiddleware):
            middleware.tracer_provider = observability.tracer_provider
    if observability.tracing_enabled:
        tracing.instrument_engine(engine, observability.tracer_provider)
        # client spans for outgoing HTTP, with traceparent
        http.tracer_provider = observability.tracer_provider
        if redis is not None:
            tracing.instrument_redis(redis, observability.tracer_provider)


def shutdown_observability(observability: Observability) -> None:
    """Flush spans still queued for export; drop this worker's live gauges."""
    observability.tracer_provider.shutdown()
    metrics.mark_process_dead()
