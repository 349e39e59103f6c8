"""Guards for what profiling found: only pure ASGI middleware, and no plain-``def``
dependency on the hot read routes (FastAPI runs those in the thread pool: a thread hop per
request; see docs/decisions/0058)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware

from storefront.app import create_app
from storefront.catalog.routes import router as catalog_router
from storefront.shops.routes import router as shops_router
from tests.conftest import make_settings

HOT_ROUTES = {
    "/shops/{shop_id}",
    "/shops/{shop_id}/products",
    "/shops/{shop_id}/products/{product_id}",
    "/shops/{shop_id}/catalog/summary",
}


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
    seen = set()
    for route in [*catalog_router.routes, *shops_router.routes]:
        if isinstance(route, APIRoute) and route.path in HOT_ROUTES and "GET" in route.methods:
            seen.add(route.path)
            assert inspect.iscoroutinefunction(route.endpoint), route.path
            for call in _calls(route.dependant):
                target = call if inspect.isroutine(call) else type(call).__call__
                assert inspect.iscoroutinefunction(target), (route.path, call)
    assert seen == HOT_ROUTES
