"""The application factory. The lifespan owns every process-wide resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from storefront import __version__
from storefront.audit.routes import router as audit_router
from storefront.audit.routes_v2 import router as audit_v2_router
from storefront.catalog.routes import router as catalog_router
from storefront.catalog.routes_v2 import router as catalog_v2_router
from storefront.events import EventBus
from storefront.graphql import graphql_router
from storefront.graphql.ide import install_graphiql
from storefront.graphql.live import LiveHub, live_consumer
from storefront.identity.routes import jwks_router
from storefront.identity.routes import router as identity_router
from storefront.identity.routes_v2 import root_router as api_v2_root
from storefront.identity.routes_v2 import router as identity_v2_router
from storefront.orders.expiry import OrderExpirySchedule
from storefront.orders.limit_routes_v2 import router as order_limits_v2_router
from storefront.orders.routes import router as orders_router
from storefront.orders.tasks import JOBS as ORDER_JOBS
from storefront.payments.routes import router as payments_router
from storefront.payments.routes_v2 import router as orders_v2_router
from storefront.payments.tasks import ReconciliationSchedule
from storefront.privacy.retention import RetentionSchedule
from storefront.privacy.routes import router as privacy_router
from storefront.privacy.routes_v2 import router as privacy_v2_router
from storefront.privacy.tasks import JOBS as PRIVACY_JOBS
from storefront.resources import open_resources
from storefront.resources.instrument import setup_observability, shutdown_observability
from storefront.sales import CONSUMERS
from storefront.sales.routes import router as sales_router
from storefront.sales.routes_v2 import router as sales_v2_router
from storefront.settings import Settings, get_settings
from storefront.shops.routes import router as shops_router
from storefront.shops.routes_v2 import router as shops_v2_router
from storefront.telemetry.tracing import fastapi_telemetry
from storefront.web import health
from storefront.web.compression import CompressionMiddleware
from storefront.web.cors import EXPOSED_HEADERS, StrictCORSMiddleware
from storefront.web.docs import install_docs
from storefront.web.fast_path import CachedReadFastPath
from storefront.web.hal import document_bodies
from storefront.web.limits import json_body_guard
from storefront.web.middleware import RequestIdMiddleware, SecurityHeadersMiddleware
from storefront.web.msgpack_bodies import MsgpackBodiesMiddleware
from storefront.web.observability import ObservabilityMiddleware
from storefront.web.paths import API_PREFIX, API_V2_PREFIX
from storefront.web.problems import install_problem_handlers
from storefront.web.protection import install_protection
from storefront.web.route_policy import declared, fast_reads
from storefront.web.serving import install_drain_on_sigterm
from storefront.web.versioning import VersioningMiddleware, document_deprecations, v1_routes
from storefront.webhooks.routes import router as webhooks_router
from storefront.webhooks.routes_v2 import router as webhooks_v2_router
from storefront.webhooks.tasks import JOBS as WEBHOOK_JOBS

logger = logging.getLogger("storefront")
# every job this release runs: the API's queue and the worker's are given the same list
JOBS = (*ORDER_JOBS, *PRIVACY_JOBS, *WEBHOOK_JOBS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    observability = setup_observability(settings, __version__)  # logs, Sentry, tracer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(
            settings, role="api", jobs=JOBS, observability=observability
        ) as resources:
            install_drain_on_sigterm(
                settings.observability.shutdown_drain_seconds, resources.draining
            )
            # GDPR retention (docs/privacy.md): here on the embedded default, else in the worker
            retention = RetentionSchedule(resources, settings)
            # unpaid orders expire (decision 0118): here too on the embedded default
            expiry = OrderExpirySchedule(resources, settings)
            # payments stuck processing are settled from the provider (decision 0137)
            reconciliation = ReconciliationSchedule(resources, settings)
            if settings.broker_url is None:
                retention.start()
                expiry.start()
                reconciliation.start()
            # GraphQL subscriptions' updates, from the events of every process (decision 0147)
            live = LiveHub(resources.redis, settings.redis_prefix)
            await live.start()
            live.watch(lambda: resources.draining.active)
            app.state.graphql_live = live
            # domain events (decision 0140): relayed from here; consumed here on the embedded
            # mode, by the worker with RabbitMQ
            events = EventBus.from_settings(
                settings,
                resources.sessionmaker,
                (*CONSUMERS, live_consumer(live.announce)),
                consume=False,
            )
            await events.start()
            app.state.events = events
            app.state.resources = resources
            # readiness computed by the process itself, every few seconds: storefront_ready
            # is right whether or not anyone polls /readyz (decision 0112)
            readiness = health.ReadinessMonitor(
                resources,
                role="api",
                interval=settings.observability.readiness_interval_seconds,
                timeout=settings.observability.readiness_timeout_seconds,
            )
            app.state.readiness = readiness
            readiness.start()
            logger.info("storefront started (environment=%s)", settings.environment.value)
            try:
                yield
            finally:
                resources.draining.begin()
                await live.stop()  # open subscriptions complete
                await readiness.stop()
                await retention.stop()
                await expiry.stop()
                await reconciliation.stop()
                await events.stop()
        # open_resources closed the job queue and every resource, in reverse order
        logger.info("storefront stopped")
        shutdown_observability(observability)

    app = FastAPI(
        title="Storefront API",
        version=__version__,
        summary="A production-grade commerce backend: shops, catalog, orders.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # /docs and /openapi.json: STOREFRONT_DOCS_ENABLED, off by default in production
        openapi_url="/openapi.json" if settings.docs_served else None,
        debug=False,
        # no trailing-slash redirects: Starlette builds their Location from the Host header,
        # which a client controls (an open redirect and a cache-poisoning vector); a wrong
        # path is a 404 problem like any other
        redirect_slashes=False,
        # the server span: FastAPI's own OpenTelemetry layer, outermost
        telemetry=fastapi_telemetry(observability.tracer_provider),  # type: ignore[arg-type]
    )
    app.state.settings = settings
    app.state.observability = observability
    install_problem_handlers(app)
    if settings.docs_served:
        install_docs(app, graphiql_url="/graphql" if settings.graphql_introspection else None)

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
        payments_router,
        webhooks_router,
        privacy_router,
        audit_router,
        sales_router,
    ):
        api.include_router(router)
    app.include_router(api)
    # API v2 (HAL, decision 0142): the same services and guards, its own prefix
    api_v2 = APIRouter(prefix=API_V2_PREFIX, dependencies=api.dependencies)
    for router in (
        identity_v2_router,
        shops_v2_router,
        catalog_v2_router,
        orders_v2_router,
        order_limits_v2_router,
        webhooks_v2_router,
        privacy_v2_router,
        audit_v2_router,
        sales_v2_router,
    ):
        api_v2.include_router(router)
    app.include_router(api_v2)
    app.include_router(api_v2_root, prefix=API_V2_PREFIX, dependencies=api.dependencies)
    app.include_router(graphql_router(settings))  # /graphql (decision 0145)
    if settings.graphql_introspection:
        install_graphiql(app)  # GraphiQL's own assets (decision 0166)
    app.include_router(jwks_router)
    app.include_router(health.router)

    # Outermost last: request id wraps everything, so even errors carry it.
    # --- innermost: cache hits of the catalog's reads answered before routing (decision 0060);
    # the routes that declare a cached read (web/route_policy.py)
    policies = declared(app.routes)  # what each route declares, read once
    app.add_middleware(CachedReadFastPath, routes=fast_reads(policies))
    # v1 routes with a v2 successor: Deprecation, Sunset, successor-version; v1 usage by
    # route (decision 0143). Outside the fast path, whose answers skip routing.
    versioned = v1_routes(app.routes)
    document_deprecations(app, versioned)  # the same headers in v1's OpenAPI document
    document_bodies(app)  # v2: 413 and 415 where a body is taken
    app.add_middleware(
        VersioningMiddleware,
        routes=versioned,
        deprecated_at=settings.api.v1_deprecated_at,
        sunset_at=settings.api.v1_sunset_at,
        record_metrics=observability.metrics_enabled,
    )
    # request bodies in MessagePack wherever JSON is taken; responses compressed per
    # Accept-Encoding (zstd, br, gzip; whole bodies of a minimum size, never streams)
    app.add_middleware(MsgpackBodiesMiddleware, prefixes=(API_PREFIX + "/", API_V2_PREFIX + "/"))
    app.add_middleware(CompressionMiddleware)
    # --- API protection, innermost: load shedding -> body limit -> rate limit ->
    # deadline (see web/protection.py). Keep it inside CORS (so browsers can read a
    # 429/503) and inside security headers and request id (so refusals carry them too).
    install_protection(app, settings, policies)
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
                "Storefront-LSN",  # read-your-writes: sent back after a write (decision 0150)
                "X-Request-ID",
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    # --- observability: RED metrics, in-flight gauge and the access log line;
    # just inside the request id, outside everything that may answer early (protection,
    # CORS), so refusals are counted and logged too. The server span is FastAPI's (above).
    app.add_middleware(ObservabilityMiddleware, record_metrics=observability.metrics_enabled)
    app.add_middleware(RequestIdMiddleware)
    return app
