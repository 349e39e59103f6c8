"""Prometheus metrics: what exists, and the hooks every engineer calls to record events.

Hooks for other parts of the code (call them; never create a second metric of the same name):

- ``record_cache(cache, hit)`` — one lookup in the named cache.
- ``record_rate_limit_refusal(limiter)`` — a request refused by the named limiter (429).
- ``record_password_hashing_refusal(operation)`` — a password hash refused for capacity (503).
- ``observe_job(job)`` — context manager around one job run: duration, and failure on error.
- ``record_job_failure(job)`` — for job runners.
- ``set_queue_depth(queue, depth)``, ``set_queue_in_progress(queue, count)``,
  ``set_outbox_backlog(rows, oldest_age_seconds)`` — set by ``jobs.depth``'s sampler.

Business KPIs live in their domains (``orders.metrics``, ``identity.metrics``,
``webhooks.metrics``), on the same registry.

Label values must come from a small fixed set (a cache or job *name*, a currency code), never
from user input: every distinct value is a new time series.

Several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``storefront serve``
sets it whenever ``STOREFRONT_WORKERS`` > 1), every process writes its samples there and
/metrics merges them; gauges declare how (``livesum``: the sum over live processes). With
one process per container (the recommended deployment) nothing of that is needed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger("storefront.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# no *_created series: they double the series count and nothing here reads them
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# --- HTTP (RED) -----------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "storefront_http_requests",
    "HTTP requests answered, by method, route template and status class.",
    ["method", "route", "status_class"],
)
HTTP_DURATION = Histogram(
    "storefront_http_request_duration_seconds",
    "Time from request start to the end of the response body, by route template.",
    ["method", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "storefront_http_requests_in_flight",
    "Requests being handled right now.",
    multiprocess_mode="livesum",
)

# --- database pool and queries --------------------------------------------------------------
DB_POOL_IN_USE = Gauge(
    "storefront_db_pool_connections_in_use",
    "Connections checked out of the pool.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "storefront_db_pool_waiting",
    "Callers waiting for a free pooled connection.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "storefront_db_pool_connections_max",
    "Most connections the pool may open (pool_size + max_overflow).",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_QUERY_DURATION = Histogram(
    "storefront_db_query_duration_seconds",
    "Time the database took for one statement, by statement kind.",
    ["pool", "operation"],
    buckets=QUERY_BUCKETS,
)

# --- hooks for caches, rate limiting and jobs ----------------------------------------------
CACHE_REQUESTS = Counter(
    "storefront_cache_requests",
    "Cache lookups by cache name and result (hit or miss).",
    ["cache", "result"],
)
RATE_LIMIT_REFUSALS = Counter(
    "storefront_rate_limit_refusals",
    "Requests refused by a rate limiter, by limiter name.",
    ["limiter"],
)
PASSWORD_HASHING_REFUSALS = Counter(
    "storefront_password_hashing_refusals",
    "Password hashes refused (503) because every hashing thread was busy and the waiting "
    "line full or too slow, by operation (hash, verify).",
    ["operation"],
)
JOB_DURATION = Histogram(
    "storefront_job_duration_seconds",
    "Run time of background jobs, by job name and outcome.",
    ["job", "outcome"],
    buckets=JOB_BUCKETS,
)
JOB_FAILURES = Counter(
    "storefront_job_failures",
    "Background job runs that failed, by job name.",
    ["job"],
)
JOB_QUEUE_DEPTH = Gauge(
    "storefront_job_queue_depth",
    "Jobs waiting in the broker for a worker (as last measured).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
JOB_QUEUE_IN_PROGRESS = Gauge(
    "storefront_job_queue_in_progress",
    "Jobs delivered to a worker and not yet acknowledged (as last measured; Redis only).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
# one outbox per database, measured by every process: the most recent sample wins
JOB_OUTBOX_BACKLOG = Gauge(
    "storefront_job_outbox_backlog",
    "Deferred jobs not yet handed to the broker (outbox rows, as last measured).",
    multiprocess_mode="mostrecent",
)
JOB_OUTBOX_OLDEST_AGE = Gauge(
    "storefront_job_outbox_oldest_age_seconds",
    "How long the oldest outbox row has waited for the broker (0: none waiting).",
    multiprocess_mode="mostrecent",
)

# --- health -------------------------------------------------------------------------------
READY = Gauge(
    "storefront_ready",
    "1 when this process's own readiness check (run every few seconds, and by /readyz) "
    "passed, 0 when it did not.",
    multiprocess_mode="livemin",
)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def record_cache(cache: str, *, hit: bool) -> None:
    CACHE_REQUESTS.labels(cache=cache, result="hit" if hit else "miss").inc()


def record_rate_limit_refusal(limiter: str) -> None:
    RATE_LIMIT_REFUSALS.labels(limiter=limiter).inc()


def record_password_hashing_refusal(operation: str) -> None:
    PASSWORD_HASHING_REFUSALS.labels(operation=operation).inc()


def record_job_failure(job: str) -> None:
    JOB_FAILURES.labels(job=job).inc()


def set_queue_depth(queue: str, depth: int) -> None:
    JOB_QUEUE_DEPTH.labels(queue=queue).set(depth)


def set_queue_in_progress(queue: str, count: int) -> None:
    JOB_QUEUE_IN_PROGRESS.labels(queue=queue).set(count)


def set_outbox_backlog(rows: int, oldest_age_seconds: float) -> None:
    JOB_OUTBOX_BACKLOG.set(rows)
    JOB_OUTBOX_OLDEST_AGE.set(oldest_age_seconds)


@contextmanager
def observe_job(job: str) -> Iterator[None]:
    """Time one job run; an exception counts as a failure and propagates."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        JOB_DURATION.labels(job=job, outcome="failure").observe(time.perf_counter() - started)
        record_job_failure(job)
        raise
    JOB_DURATION.labels(job=job, outcome="success").observe(time.perf_counter() - started)


def set_ready(ready: bool) -> None:
    READY.set(1 if ready else 0)


# --- database instrumentation ---------------------------------------------------------------
def _operation(statement: str) -> str:
    word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    return word if word in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"} else "OTHER"


_COUNTED = "_sf_counted_in_use"


def instrument_engine(engine: AsyncEngine, *, pool_name: str = "primary") -> None:
    """Pool gauges and statement latency from SQLAlchemy's own engine and pool events."""
    sync_engine = engine.sync_engine
    pool: Any = sync_engine.pool
    in_use = DB_POOL_IN_USE.labels(pool=pool_name)
    waiting = DB_POOL_WAITING.labels(pool=pool_name)
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if callable(size):
        DB_POOL_MAX.labels(pool=pool_name).set(size() + max(overflow, 0))

    # Each connection record remembers that it was counted: a connection checked out before
    # the engine was instrumented (start-up work still running) is not subtracted on its
    # check-in, so the gauge never goes below the true count.
    @event.listens_for(sync_engine, "checkout")
    def _checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info[_COUNTED] = True
        in_use.inc()

    @event.listens_for(sync_engine, "checkin")
    def _checkin(_dbapi: Any, record: Any) -> None:
        if record is not None and record.info.pop(_COUNTED, False):
            in_use.dec()

    # SQLAlchemy has no "waiting for a connection" event: count callers inside the pool's
    # acquire step (the queue wait), around the one method every checkout goes through.
    original_do_get = pool._do_get

    def _do_get() -> Any:
        waiting.inc()
        try:
            return original_do_get()
        finally:
            waiting.dec()

    pool._do_get = _do_get

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault("_sf_query_started", []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get("_sf_query_started")
        if started:
            DB_QUERY_DURATION.labels(pool=pool_name, operation=_operation(statement)).observe(
                time.perf_counter() - started.pop()
            )

    @event.listens_for(sync_engine, "handle_error")
    def _error(context: Any) -> None:
        conn = getattr(context, "connection", None)
        started = conn.info.get("_sf_query_started") if conn is not None else None
        if started:
            started.pop()


# --- exposition ---------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render() -> tuple[bytes, str]:
    """The text exposition: this process's registry, or every worker's when multiprocess."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "127.0.0.1") -> Any:
    """For processes without the API (the job worker): /metrics on its own port (0: off).
    Returns the HTTP server, or None when off or the port is taken (logged, not fatal)."""
    if port <= 0:
        return None
    from prometheus_client import start_http_server

    registry: CollectorRegistry = DEFAULT_REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        logger.warning("metrics not served: cannot listen on %s:%d (%s)", host, port, exc)
        return None
    return server


def mark_process_dead() -> None:
    """Drop this worker's live gauges from the shared directory when it exits."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
