"""Guards for what profiling found: only pure ASGI middleware, and no plain-``def``
dependency on the hot read routes (FastAPI runs those in the thread pool: a thread hop per
request; see docs/decisions/0058)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware

from storefront.app import create_app
from storefront.cache import Entry, ResponseCache, make_entry
from storefront.catalog.routes import router as catalog_router
from storefront.shops.routes import router as shops_router
from storefront.web import observability as observability_middleware
from storefront.web.fast_path import CachedReadFastPath
from storefront.web.middleware import RequestIdMiddleware
from tests.conftest import make_settings

HOT_ROUTES = {
    "/shops/{shop_id}",
    "/shops/{shop_id}/products",
    "/shops/{shop_id}/products/{product_id}",
    "/shops/{shop_id}/catalog/summary",
}


def _cls(middleware: Middleware) -> object:
    """The middleware's class: typed as a factory, compared here by identity."""
    return middleware.cls


def _kwarg(middleware: Middleware, name: str) -> Any:
    """An argument the middleware is built with (starlette types them ``object``)."""
    return middleware.kwargs[name]


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def test_middleware_is_pure_asgi() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    assert app.user_middleware
    for middleware in app.user_middleware:
        cls = middleware.cls
        assert not (isinstance(cls, type) and issubclass(cls, BaseHTTPMiddleware)), cls


def test_hot_read_routes_have_no_thread_pool_dependencies() -> None:
    seen: set[str] = set()
    for route in [*catalog_router.routes, *shops_router.routes]:
        if (
            isinstance(route, APIRoute)
            and route.path in HOT_ROUTES
            and "GET" in (route.methods or ())
        ):
            seen.add(route.path)
            assert inspect.iscoroutinefunction(route.endpoint), route.path
            for call in _calls(route.dependant):
                target = call if inspect.isroutine(call) else type(call).__call__
                assert inspect.iscoroutinefunction(target), (route.path, call)
    assert seen == HOT_ROUTES


def test_middleware_stack_depth_and_the_fast_path_innermost() -> None:
    """Every layer runs on every request: the stack is pinned (decision 0060). Outermost
    first: request id, observability, security headers, header-count limit (decision 0094),
    load shedding, body limit, rate limit, deadline, compression, MessagePack bodies and v1's
    deprecation headers (decisions 0142, 0143: each passes a request it has no business with
    through at once), then the cache-hit fast path just before FastAPI's own routing."""
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", rate_limit_enabled=True))
    layers = [_cls(m) for m in app.user_middleware]
    assert len(layers) == 12, layers
    assert layers[-1] is CachedReadFastPath
    assert layers[0] is RequestIdMiddleware


def test_fast_path_covers_the_hot_cached_reads() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    (fast,) = [m for m in app.user_middleware if _cls(m) is CachedReadFastPath]
    templates = {route.template for route in _kwarg(fast, "routes")}
    assert templates == {
        "/api/v1/shops/{shop_id}/products/{product_id}",
        "/api/v1/shops/{shop_id}/products",
        "/api/v1/shops/{shop_id}/catalog/summary",
    }
    for route in _kwarg(fast, "routes"):  # an L1 lookup: it must not block the loop either
        assert inspect.iscoroutinefunction(route.lookup)


async def test_a_cache_hit_without_redis_reads_no_generations() -> None:
    """Without Redis the generations are in the process; with Redis see
    tests/cache/test_cache_race_redis.py (concurrent hits share one generation read)."""
    cache = ResponseCache(redis=None, prefix="t:")
    entry = make_entry(b"{}")

    async def compute() -> Entry:
        return entry

    await cache.get_or_compute("t", "k", ["tag"], compute)
    assert await cache.peek("t", "k", ["tag"]) == entry
    assert cache.stats.generation_reads == 0  # a generation read is a Redis round trip


async def test_access_line_is_built_only_when_its_level_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """structlog runs its processor chain before the stdlib level check: the middleware asks
    the level first, so a quiet log level costs no access-line work per request."""
    built: list[dict[str, Any]] = []

    class Recorder:
        def log(self, _level: int, _event: str, **fields: Any) -> None:
            built.append(fields)

    monkeypatch.setattr(observability_middleware, "access_log", Recorder())

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(_message: Any) -> None:
        return None

    middleware = observability_middleware.ObservabilityMiddleware(app, record_metrics=False)
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    logger = logging.getLogger("storefront.access")
    previous = logger.level
    try:
        logger.setLevel(logging.WARNING)
        await middleware(dict(scope), receive, send)
        assert built == []
        logger.setLevel(logging.INFO)
        await middleware(dict(scope), receive, send)
        assert [line["status"] for line in built] == [200]
    finally:
        logger.setLevel(previous)
