"""The application factory. The lifespan owns every process-wide resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, Depends, FastAPI
from redis.asyncio import Redis

from storefront import __version__
from storefront.audit.routes import router as audit_router
from storefront.catalog.reads import FAST_READS
from storefront.catalog.routes import router as catalog_router
from storefront.identity.routes import jwks_router
from storefront.identity.routes import router as identity_router
from storefront.orders.routes import router as orders_router
from storefront.platform import health
from storefront.platform.cache import ResponseCache
from storefront.platform.cache.invalidation import CACHE_INFO_KEY
from storefront.platform.crypto.config import build_vault
from storefront.platform.crypto.vault import VAULT_INFO_KEY
from storefront.platform.db import create_engine, create_sessionmaker
from storefront.platform.http.client_address import parse_networks
from storefront.platform.http.cors import EXPOSED_HEADERS, StrictCORSMiddleware
from storefront.platform.http.docs import install_docs
from storefront.platform.http.fast_path import CachedReadFastPath
from storefront.platform.http.limits import json_body_guard
from storefront.platform.http.middleware import RequestIdMiddleware, SecurityHeadersMiddleware
from storefront.platform.http.problems import install_problem_handlers
from storefront.platform.idempotency import IdempotencyStore, ResponseSealer
from storefront.platform.jobs import JobQueue, OutboxConfig, build_job_queue
from storefront.platform.mail import Mailer
from storefront.platform.observability.middleware import ObservabilityMiddleware
from storefront.platform.observability.setup import (
    instrument_runtime,
    setup_observability,
    shutdown_observability,
)
from storefront.platform.observability.tracing import fastapi_telemetry
from storefront.platform.outbound import OutboundClient
from storefront.platform.redis import create_redis
from storefront.platform.runtime import Runtime
from storefront.platform.security.kit import build_security_kit
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.secretbox import derive_key
from storefront.platform.security.tokens import TokenService
from storefront.platform.serving import install_drain_on_sigterm
from storefront.privacy.retention import RetentionSchedule
from storefront.privacy.routes import router as privacy_router
from storefront.protection import build_rate_limiter, install_protection
from storefront.schema import head_revision
from storefront.settings import Settings, get_settings
from storefront.shops.routes import router as shops_router
from storefront.webhooks.routes import router as webhooks_router

logger = logging.getLogger("storefront")
API_PREFIX = "/api/v1"


def build_cache(settings: Settings, redis: Redis | None) -> ResponseCache:
    """The response cache shares the process's one Redis pool (L2); L1 only without it."""
    return ResponseCache(
        redis=redis,
        prefix=settings.redis_prefix,
        enabled=settings.cache.enabled,
        ttl_seconds=settings.cache.ttl_seconds,
        local_max_bytes=settings.cache.local_max_mb * 1024 * 1024,
        lock_ms=settings.cache.fill_lock_ms,
        lease_ms=settings.cache.lease_ms,
    )


IDEMPOTENCY_PURPOSE = "storefront idempotency responses"


def build_runtime(settings: Settings) -> Runtime:
    db = settings.database
    engine = create_engine(
        settings.database_url,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout_seconds,
        pool_recycle=db.pool_recycle_seconds,
        pool_pre_ping=db.pool_pre_ping,
        statement_timeout_ms=db.statement_timeout_ms,
        echo=db.echo,
    )
    auth = settings.auth
    redis = create_redis(settings.redis_url) if settings.redis_url else None
    cache = build_cache(settings, redis)
    vault = build_vault(settings)  # fails fast on unusable master keys
    sessionmaker = create_sessionmaker(engine, info={CACHE_INFO_KEY: cache, VAULT_INFO_KEY: vault})
    security = build_security_kit(auth, sessionmaker, redis, settings.redis_prefix)
    return Runtime(
        engine=engine,
        sessionmaker=sessionmaker,
        passwords=PasswordHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
            max_threads=auth.hashing_threads,
        ),
        tokens=TokenService(
            keys=security.keys.ring,
            issuer=auth.jwt_issuer,
            audience=auth.jwt_audience,
            access_ttl_seconds=auth.access_token_ttl_seconds,
        ),
        idempotency=IdempotencyStore(
            ttl=timedelta(hours=settings.idempotency.ttl_hours),
            lock_timeout=timedelta(seconds=settings.idempotency.lock_timeout_seconds),
            sealer=ResponseSealer(
                derive_key(auth.jwt_secret.get_secret_value(), IDEMPOTENCY_PURPOSE)
            ),
        ),
        security=security,
        vault=vault,
        redis=redis,
        cache=cache,
        redis_prefix=settings.redis_prefix,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        jobs=build_jobs(settings),
        mailer=build_mailer(settings),
        http=build_http_client(settings),
        settings=settings,
    )


def build_jobs(settings: Settings) -> JobQueue:
    jobs = settings.jobs
    return build_job_queue(
        settings.broker_url,
        queue=jobs.queue,
        max_retries=jobs.max_retries,
        base_delay=jobs.retry_base_delay_seconds,
        max_delay=jobs.retry_max_delay_seconds,
        concurrency=jobs.worker_concurrency,
        shutdown_timeout=jobs.shutdown_timeout_seconds,
        outbox=OutboxConfig(
            poll_seconds=jobs.outbox_poll_seconds,
            lease_seconds=jobs.outbox_lease_seconds,
            batch_size=jobs.outbox_batch_size,
            send_timeout_seconds=jobs.outbox_send_timeout_seconds,
            depth_interval_seconds=jobs.queue_depth_interval_seconds,
            pool_size=jobs.outbox_pool_size,
        ),
    )


def build_http_client(settings: Settings) -> OutboundClient:
    outbound = settings.outbound
    return OutboundClient(
        user_agent=f"Storefront/{__version__} (+webhooks)",
        timeout_seconds=outbound.timeout_seconds,
        connect_timeout_seconds=outbound.connect_timeout_seconds,
        max_connections=outbound.max_connections,
        max_connections_per_host=outbound.max_connections_per_host,
        allow_private_targets=outbound.allow_private_targets,
        allow_http=outbound.allow_http,
    )


def build_mailer(settings: Settings) -> Mailer | None:
    smtp = settings.smtp
    if smtp.host is None:
        return None  # mail off: jobs that send mail skip it
    return Mailer(
        host=smtp.host,
        port=smtp.port,
        sender=smtp.sender,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        security=smtp.security,
        timeout_seconds=smtp.timeout_seconds,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    observability = setup_observability(settings, __version__)  # logs, Sentry, tracer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        runtime.expected_schema_revision = head_revision()
        await runtime.security.keys.try_load()  # a fresh database gets its first key here
        runtime.rate_limiter = build_rate_limiter(runtime, settings)
        if runtime.jobs is not None:
            await runtime.jobs.startup(runtime)  # the broker (in-process when no URL is set)
        instrument_runtime(runtime, observability)
        install_drain_on_sigterm(settings.observability.shutdown_drain_seconds)
        # GDPR retention (docs/privacy.md): here on the embedded default, else in the worker
        retention = RetentionSchedule(runtime, settings)
        if settings.broker_url is None:
            retention.start()
        app.state.runtime = runtime
        logger.info("storefront started (environment=%s)", settings.environment.value)
        try:
            yield
        finally:
            runtime.shutting_down = True
            await retention.stop()
            if runtime.jobs is not None:
                await runtime.jobs.shutdown()
            await runtime.aclose()
            logger.info("storefront stopped")
            shutdown_observability(observability)

    app = FastAPI(
        title="Storefront API",
        version=__version__,
        summary="A production-grade commerce backend: shops, catalog, orders.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        debug=False,
        # the server span: FastAPI's own OpenTelemetry layer, outermost (issue 7)
        telemetry=fastapi_telemetry(observability.tracer_provider),  # type: ignore[arg-type]
    )
    app.state.settings = settings
    app.state.observability = observability
    install_problem_handlers(app)
    install_docs(app)

    limits = settings.protection
    api = APIRouter(
        prefix=API_PREFIX,
        # 415 for non-JSON bodies on JSON routes; bounded nesting and array lengths
        dependencies=[
            Depends(
                json_body_guard(
                    max_depth=limits.max_json_depth, max_array_items=limits.max_json_array_items
                )
            )
        ],
    )
    for router in (
        identity_router,
        shops_router,
        catalog_router,
        orders_router,
        webhooks_router,
        privacy_router,
        audit_router,
    ):
        api.include_router(router)
    app.include_router(api)
    app.include_router(jwks_router)
    app.include_router(health.router)

    # Outermost last: request id wraps everything, so even errors carry it.
    # --- innermost: cache hits of the catalog's reads answered before routing (decision 0060)
    app.add_middleware(
        CachedReadFastPath,
        routes=[read.under(API_PREFIX) for read in FAST_READS],
    )
    # --- API protection (issue 4), innermost: load shedding -> body limit -> rate limit ->
    # deadline (see storefront/protection.py). Keep it inside CORS (so browsers can read a
    # 429/503) and inside security headers and request id (so refusals carry them too).
    install_protection(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            StrictCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.protection.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    # --- observability (issue 7): RED metrics, in-flight gauge and the access log line;
    # just inside the request id, outside everything that may answer early (protection,
    # CORS), so refusals are counted and logged too. The server span is FastAPI's (above).
    app.add_middleware(ObservabilityMiddleware, record_metrics=observability.metrics_enabled)
    app.add_middleware(RequestIdMiddleware)
    return app
