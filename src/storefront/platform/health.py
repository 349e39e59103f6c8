"""Liveness, readiness and per-component health; the /metrics exposition route.

Readiness checks the primary database, its schema revision and every dependency the settings
declare required (Redis when ``STOREFRONT_REDIS_URL`` is set, the job broker when
``STOREFRONT_BROKER_URL`` is), concurrently, each bounded by
``STOREFRONT_OBSERVABILITY__READINESS_TIMEOUT_SECONDS``. On SIGTERM the server first *drains*
(``begin_draining``): readiness answers 503 so the load balancer stops sending traffic, while
requests keep being served; only then does the server stop (see ``storefront serve``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Request
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response

from storefront.platform.http.problems import problem_response
from storefront.platform.observability import metrics
from storefront.platform.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0
router = APIRouter(tags=["operations"])


class _Draining:
    """Process-wide: set by the server on SIGTERM, before it stops accepting connections."""

    active = False


def begin_draining() -> None:
    _Draining.active = True


def is_draining() -> bool:
    return _Draining.active


def _reset_draining() -> None:  # for tests
    _Draining.active = False


async def _timed(probe: Callable[[], Awaitable[object]], within: float) -> dict[str, Any]:
    """Run one dependency probe under a timeout: up or down (with the error's type), and
    how long it took."""
    started = time.perf_counter()
    try:
        with anyio.fail_after(within):
            await probe()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {
            "status": "down",
            "error": type(exc).__name__,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def check_database(
    engine: AsyncEngine, within: float = CHECK_TIMEOUT_SECONDS
) -> dict[str, Any]:
    async def select_one() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return await _timed(select_one, within)


async def check_redis(redis: Redis, within: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    return await _timed(redis.ping, within)


async def check_schema(
    engine: AsyncEngine, expected: str | None, within: float = CHECK_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """The database has been migrated to the revision this code expects."""
    if expected is None:
        return {"status": "up", "detail": "no migrations shipped; not checked"}
    try:
        with anyio.fail_after(within):
            async with engine.connect() as conn:
                current = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"status": "down", "error": type(exc).__name__, "expected": expected}
    if current != expected:
        return {"status": "down", "current": current, "expected": expected}
    return {"status": "up", "revision": current}


@router.get("/livez", summary="Liveness: the process can serve")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


def _timeout(request: Request) -> float:
    settings = getattr(request.app.state, "settings", None)
    observability = getattr(settings, "observability", None)
    return float(getattr(observability, "readiness_timeout_seconds", CHECK_TIMEOUT_SECONDS))


_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}


async def check_broker(url: str, within: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The job broker accepts a TCP connection (its client library connects on startup)."""
    parts = urlsplit(url)

    async def connect() -> None:
        host = parts.hostname or "127.0.0.1"
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
        stream = await anyio.connect_tcp(host, port)
        await stream.aclose()

    return await _timed(connect, within)


def _broker_url(request: Request) -> str | None:
    url = getattr(getattr(request.app.state, "settings", None), "broker_url", None)
    return url if isinstance(url, str) and url else None


def required_checks(
    runtime: Runtime, timeout: float, broker_url: str | None = None
) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """Every dependency readiness waits for, by name (add new required dependencies here):
    configured means required, since features depend on it."""
    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    if runtime.redis is not None:
        redis = runtime.redis

        async def _redis() -> dict[str, Any]:
            return await check_redis(redis, timeout)

        checks["redis"] = _redis
    if broker_url is not None:
        url = broker_url

        async def _broker() -> dict[str, Any]:
            return await check_broker(url, timeout)

        checks["broker"] = _broker
    return checks


async def _run_checks(
    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]],
) -> dict[str, dict[str, Any]]:
    names = list(checks)
    results = await asyncio.gather(*(checks[name]() for name in names))
    return dict(zip(names, results, strict=True))


@router.get("/readyz", summary="Readiness: the primary database and every required dependency")
async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if runtime.shutting_down or is_draining():
        metrics.set_ready(False)
        return problem_response(request, 503, detail="Shutting down", headers={"Retry-After": "5"})
    timeout = _timeout(request)
    db = await check_database(runtime.engine, timeout)
    if db["status"] != "up":
        metrics.set_ready(False)
        return problem_response(
            request,
            503,
            detail="The primary database is not answering",
            extra={"checks": {"db_primary": db}},
        )
    schema_check = check_schema(runtime.engine, runtime.expected_schema_revision, timeout)
    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "schema": lambda: schema_check,
        **required_checks(runtime, timeout, _broker_url(request)),
    }
    results = {"db_primary": db, **await _run_checks(checks)}
    if results["schema"]["status"] != "up":
        metrics.set_ready(False)
        return problem_response(
            request,
            503,
            detail="The database schema is not at the revision this code expects; migrate it",
            extra={"checks": results},
        )
    down = sorted(name for name, result in results.items() if result["status"] != "up")
    if down:
        metrics.set_ready(False)
        return problem_response(
            request,
            503,
            detail="A required dependency is not answering: " + ", ".join(down),
            extra={"checks": results},
        )
    metrics.set_ready(True)
    return JSONResponse({"status": "ready", "checks": results})


@router.get("/healthz", summary="Per-component status and latency")
async def healthz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    components = {"db_primary": await check_database(runtime.engine)}
    if runtime.redis is not None:
        components["redis"] = await check_redis(runtime.redis)
    broker_url = _broker_url(request)
    if broker_url is not None:
        components["broker"] = await check_broker(broker_url)
    if runtime.rate_limiter is not None:  # "degraded" while it stands in for Redis in memory
        components["rate_limiter"] = runtime.rate_limiter.status()
    healthy = all(c["status"] == "up" for c in components.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "components": components},
        status_code=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
async def metrics_route(request: Request) -> Response:
    return await metrics.metrics_endpoint(request)
