"""The application factory. The lifespan owns every process-wide resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from storefront import __version__
from storefront.catalog.routes import router as catalog_router
from storefront.identity.routes import router as identity_router
from storefront.orders.routes import router as orders_router
from storefront.platform import health
from storefront.platform.db import create_engine, create_sessionmaker
from storefront.platform.http.client_address import parse_networks
from storefront.platform.http.docs import install_docs
from storefront.platform.http.middleware import RequestIdMiddleware, SecurityHeadersMiddleware
from storefront.platform.http.problems import install_problem_handlers
from storefront.platform.idempotency import IdempotencyStore
from storefront.platform.redis import create_redis
from storefront.platform.runtime import Runtime
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.tokens import TokenService
from storefront.schema import head_revision
from storefront.settings import Settings, get_settings
from storefront.shops.routes import router as shops_router

logger = logging.getLogger("storefront")
API_PREFIX = "/api/v1"


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
    return Runtime(
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        passwords=PasswordHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
            max_threads=auth.hashing_threads,
        ),
        tokens=TokenService(
            secret=auth.jwt_secret.get_secret_value(),
            algorithm=auth.jwt_algorithm,
            issuer=auth.jwt_issuer,
            audience=auth.jwt_audience,
            access_ttl_seconds=auth.access_token_ttl_seconds,
        ),
        idempotency=IdempotencyStore(
            ttl=timedelta(hours=settings.idempotency.ttl_hours),
            lock_timeout=timedelta(seconds=settings.idempotency.lock_timeout_seconds),
        ),
        redis=create_redis(settings.redis_url) if settings.redis_url else None,
        redis_prefix=settings.redis_prefix,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        runtime.expected_schema_revision = head_revision()
        app.state.runtime = runtime
        logger.info("storefront started (environment=%s)", settings.environment.value)
        try:
            yield
        finally:
            runtime.shutting_down = True
            if runtime.redis is not None:
                await runtime.redis.aclose()
            await runtime.engine.dispose()
            logger.info("storefront stopped")

    app = FastAPI(
        title="Storefront API",
        version=__version__,
        summary="A production-grade commerce backend: shops, catalog, orders.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        debug=False,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    install_docs(app)

    api = APIRouter(prefix=API_PREFIX)
    for router in (identity_router, shops_router, catalog_router, orders_router):
        api.include_router(router)
    app.include_router(api)
    app.include_router(health.router)

    # Outermost last: request id wraps everything, so even errors carry it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Link", "Location", "X-Request-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
