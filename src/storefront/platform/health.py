"""Liveness, readiness and per-component health."""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response

from storefront.platform.http.problems import problem_response
from storefront.platform.redis import check_redis
from storefront.platform.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0
router = APIRouter(tags=["operations"])


async def check_database(engine: AsyncEngine) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {
            "status": "down",
            "error": type(exc).__name__,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def check_schema(engine: AsyncEngine, expected: str | None) -> dict[str, Any]:
    """The database has been migrated to the revision this code expects."""
    if expected is None:
        return {"status": "up", "detail": "no migrations shipped; not checked"}
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
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


@router.get("/readyz", summary="Readiness: the primary database answers and is migrated")
async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if runtime.shutting_down:
        return problem_response(request, 503, detail="Shutting down", headers={"Retry-After": "5"})
    db = await check_database(runtime.engine)
    if db["status"] != "up":
        return problem_response(
            request,
            503,
            detail="The primary database is not answering",
            extra={"checks": {"db_primary": db}},
        )
    schema = await check_schema(runtime.engine, runtime.expected_schema_revision)
    if schema["status"] != "up":
        return problem_response(
            request,
            503,
            detail="The database schema is not at the revision this code expects; migrate it",
            extra={"checks": {"db_primary": db, "schema": schema}},
        )
    return JSONResponse({"status": "ready", "checks": {"db_primary": db, "schema": schema}})


@router.get("/healthz", summary="Per-component status and latency")
async def healthz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    components = {"db_primary": await check_database(runtime.engine)}
    if runtime.redis is not None:
        components["redis"] = await check_redis(runtime.redis)
    healthy = all(c["status"] == "up" for c in components.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "components": components},
        status_code=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )
