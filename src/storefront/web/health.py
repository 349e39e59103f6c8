"""Liveness, readiness and per-component health; the /metrics exposition route.

Readiness is computed by each process itself, every
``STOREFRONT_OBSERVABILITY__READINESS_INTERVAL_SECONDS`` and on every /readyz
(:class:`ReadinessMonitor`), and exported as ``storefront_ready``. The API checks the primary
database, its schema revision and Redis when ``STOREFRONT_REDIS_URL`` is set; the job worker
checks the database, the schema and the broker. Not the API's readiness: the broker (jobs wait
in the outbox while it is away; /healthz shows it "degraded"). Checks run concurrently, each
bounded by ``STOREFRONT_OBSERVABILITY__READINESS_TIMEOUT_SECONDS``. On SIGTERM the server first
*drains* (``resources.draining``): readiness answers 503 so the load balancer stops sending
traffic, while requests keep being served; only then does the server stop (see
``storefront serve``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response

from storefront.infra.availability import dependency, spawn
from storefront.kit.multihost import url_hosts
from storefront.migration_head import schema_compatible
from storefront.resources import Resources
from storefront.telemetry import metrics
from storefront.web import metrics as web_metrics
from storefront.web.problems import problem_response
from storefront.web.route_policy import route_policy

CHECK_TIMEOUT_SECONDS = 2.0
router = APIRouter(tags=["operations"])


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
    if current == expected:
        return {"status": "up", "revision": current}
    if schema_compatible(current, expected):  # migrated ahead of this code: a rolling deploy
        return {"status": "up", "revision": current, "expected": expected, "ahead": True}
    return {"status": "down", "current": current, "expected": expected}


@router.get("/livez", summary="Liveness: the process can serve")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


def _timeout(request: Request) -> float:
    settings = getattr(request.app.state, "settings", None)
    observability = getattr(settings, "observability", None)
    return float(getattr(observability, "readiness_timeout_seconds", CHECK_TIMEOUT_SECONDS))


_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}


async def check_broker(url: str, within: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The job broker accepts a TCP connection (its client library connects on startup):
    one of the nodes of a cluster's URL, one of the sentinels of a Sentinel address."""

    async def connect() -> None:
        failure: OSError | None = None
        for host, port in url_hosts(url, _DEFAULT_PORTS):
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError as exc:
                failure = exc
                continue
            await stream.aclose()
            return
        if failure is not None:
            raise failure

    return await _timed(connect, within)


def _broker_url(request: Request) -> str | None:
    url = getattr(getattr(request.app.state, "settings", None), "broker_url", None)
    return url if isinstance(url, str) and url else None


def required_checks(
    resources: Resources, timeout: float, broker_url: str | None = None
) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The dependencies readiness waits for besides the database, by name (add new required
    dependencies here): Redis when configured, since features depend on it; the broker when
    ``broker_url`` is given (the worker's readiness, not the API's: decision 0111)."""
    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    if resources.redis is not None:
        redis = resources.redis

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


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    detail: str | None = None  # why not
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


Role = Literal["api", "worker"]


async def evaluate(
    resources: Resources, *, role: Role, within: float, broker_url: str | None
) -> Readiness:
    """What this process needs, checked now. The API: the primary database at the expected
    schema revision, and Redis when configured (the broker is not among them: deferred jobs
    wait in the outbox while it is away, see /healthz). The worker: the database, the schema
    and the broker it consumes from."""
    if resources.draining.active:
        return Readiness(False, "Shutting down")
    timeout = within
    db = await check_database(resources.engine, timeout)
    if db["status"] != "up":
        return Readiness(False, "The primary database is not answering", {"db_primary": db})
    schema_check = check_schema(resources.engine, resources.expected_schema_revision, timeout)
    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "schema": lambda: schema_check,
        **required_checks(resources, timeout, broker_url if role == "worker" else None),
    }
    results = {"db_primary": db, **await _run_checks(checks)}
    if results["schema"]["status"] != "up":
        return Readiness(
            False,
            "The database schema is not at the revision this code expects; migrate it",
            results,
        )
    down = sorted(name for name, result in results.items() if result["status"] != "up")
    if down:
        return Readiness(
            False, "A required dependency is not answering: " + ", ".join(down), results
        )
    return Readiness(True, None, results)


class ReadinessMonitor:
    """This process's readiness, computed by the process itself every ``interval`` seconds
    (and on every /readyz) and exported as the ``storefront_ready`` gauge: a healthy process
    reports 1 whether or not anyone polls /readyz, an API process and a worker alike. Its
    transitions are what the log says about the database: once when it goes away, once when
    it is back (infra/availability.py)."""

    def __init__(
        self,
        resources: Resources,
        *,
        role: Role,
        interval: float,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        broker_url: str | None = None,
    ) -> None:
        self.resources = resources
        self.role = role
        self.interval = interval
        self.timeout = timeout
        self.broker_url = broker_url
        self.last: Readiness | None = None
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> Readiness:
        started = time.monotonic()
        result = await evaluate(
            self.resources, role=self.role, within=self.timeout, broker_url=self.broker_url
        )
        self.last = result
        metrics.set_ready(result.ready)
        self._note_dependencies(result, observed_at=started)
        return result

    @staticmethod
    def _note_dependencies(result: Readiness, *, observed_at: float) -> None:
        """What the checks saw, as of ``observed_at`` (when they began): a change of state
        recorded since then (a request that saw Redis die mid-check) is newer and stands."""
        checks = result.checks
        database = dependency("database")
        db, schema = checks.get("db_primary"), checks.get("schema")
        if db is not None and db["status"] != "up":
            database.down(
                str(db.get("reason") or db.get("error") or "not answering"),
                observed_at=observed_at,
            )
        elif schema is not None and schema["status"] != "up":
            if "error" in schema:
                reason = f"schema not readable ({schema['error']}): not migrated?"
            else:
                reason = (
                    f"schema at revision {schema.get('current')}, "
                    f"expected {schema.get('expected')}: migrate it"
                )
            database.down(reason, observed_at=observed_at)
        elif db is not None and schema is not None:
            database.up(observed_at=observed_at)
        for name in ("redis", "broker"):
            check = checks.get(name)
            if check is None:
                continue
            if check["status"] == "up":
                dependency(name).up(observed_at=observed_at)
            else:
                reason = str(check.get("error") or "not answering")
                dependency(name).down(reason, observed_at=observed_at)

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = spawn(self._run(), name=f"storefront-readiness-{self.role}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        metrics.set_ready(False)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed evaluation is "not ready"
                metrics.set_ready(False)
            await asyncio.sleep(self.interval)


def _monitor(request: Request) -> ReadinessMonitor:
    monitor = getattr(request.app.state, "readiness", None)
    if isinstance(monitor, ReadinessMonitor):
        return monitor
    # an app whose lifespan did not create one: the API's checks, computed on demand
    monitor = ReadinessMonitor(request.app.state.resources, role="api", interval=0)
    monitor.timeout = _timeout(request)
    request.app.state.readiness = monitor
    return monitor


@router.get("/readyz", summary="Readiness: the primary database and every required dependency")
@route_policy(rate="operations")
async def readyz(request: Request) -> Response:
    result = await _monitor(request).check()  # the same check the process runs on a schedule
    details = _details_allowed(request)  # in production: the scraper's (decision 0125)
    if result.ready:
        return JSONResponse({"status": "ready", **({"checks": result.checks} if details else {})})
    if not result.checks or not details:
        return problem_response(request, 503, detail=result.detail, headers={"Retry-After": "5"})
    return problem_response(request, 503, detail=result.detail, extra={"checks": result.checks})


def _details_allowed(request: Request) -> bool:
    """The components' details (error types, latencies, revisions) name what runs and how
    it fails: in production only for the scrape token's holder (decision 0125); anonymous
    callers get the overall status and its status code."""
    settings = getattr(request.app.state, "settings", None)
    if settings is None or settings.environment != "production":
        return True
    return web_metrics.presents_scrape_token(request, settings.observability.metrics_token)


@router.get(
    "/healthz",
    summary="Overall status; per-component status and latency (in production: with the "
    "metrics scrape token)",
)
# probes and scrapes have their own small budget per address, in each process (decision
# 0092); /healthz runs a database query and a Redis ping per call
@route_policy(rate="operations")
async def healthz(request: Request) -> Response:
    resources: Resources = request.app.state.resources
    components = {"db_primary": await check_database(resources.engine)}
    # the schema too: an unmigrated database answers SELECT 1 while every route fails
    components["schema"] = await check_schema(resources.engine, resources.expected_schema_revision)
    if resources.reads.enabled:  # measured now: lag in bytes and seconds (decision 0150)
        await resources.reads.check()
        components["db_replica"] = resources.reads.status()
    if resources.redis is not None:
        components["redis"] = await check_redis(resources.redis)
    broker_url = _broker_url(request)
    if broker_url is not None:
        broker = await check_broker(broker_url)
        if broker["status"] != "up" or (
            resources.jobs is not None and not resources.jobs.connected
        ):
            # not a failure of the API: deferred jobs wait in the outbox and are relayed
            # once the broker is back (decision 0111); readiness does not depend on it
            broker = {
                **broker,
                "status": "degraded",
                "detail": "jobs are held in the outbox until the broker is reachable",
            }
        components["broker"] = broker
    if resources.rate_limiter is not None:  # "degraded" while it stands in for Redis in memory
        components["rate_limiter"] = resources.rate_limiter.status()
    healthy = all(c["status"] == "up" for c in components.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "degraded"}
    if _details_allowed(request):
        body["components"] = components
    return JSONResponse(
        body,
        status_code=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
@route_policy(rate="operations")
async def metrics_route(request: Request) -> Response:
    return await web_metrics.metrics_endpoint(request)
