"""Route policies are read from the routes as the app mounts them (web/route_policy.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from starlette.types import Scope

from storefront.resources import Resources
from storefront.web.fast_path import Hit
from storefront.web.route_policy import (
    RoutePolicy,
    body_limits,
    declared,
    fast_reads,
    rate_rules,
    route_policy,
)


async def _lookup(_resources: Resources, _params: Mapping[str, str], _scope: Scope) -> Hit | None:
    return None


async def _page(limit: Annotated[int, Query()] = 20, cursor: str | None = None) -> None:
    return None


async def _guard(token: Annotated[str | None, Query(alias="api-token")] = None) -> None:
    return None


def _app() -> FastAPI:
    inner = APIRouter()

    @inner.get("/things/{thing_id}")
    @route_policy(cached=_lookup)
    async def get_thing(thing_id: str, page: Annotated[None, Depends(_page)]) -> None:
        return None

    @inner.post("/things/bulk")
    @route_policy(rate="expensive", body="bulk")
    async def bulk() -> None:
        return None

    @inner.api_route("/sign-in", methods=["POST", "PUT"])
    @route_policy(rate="auth", account_field="email")
    async def sign_in() -> None:
        return None

    @inner.get("/plain")
    async def plain() -> None:
        return None

    outer = APIRouter(prefix="/api/v9", dependencies=[Depends(_guard)])
    outer.include_router(inner)
    app = FastAPI()
    app.include_router(outer)
    return app


def test_the_mounted_path_and_each_method() -> None:
    rules = rate_rules(declared(_app().routes))
    assert [(r.method, r.path, r.policy, r.account_field) for r in rules] == [
        ("POST", "/api/v9/things/bulk", "expensive", None),
        ("POST", "/api/v9/sign-in", "auth", "email"),
        ("PUT", "/api/v9/sign-in", "auth", "email"),
    ]


def test_body_limits_by_path() -> None:
    assert body_limits(declared(_app().routes), {"bulk": 123}) == [("/api/v9/things/bulk", 123)]


def test_a_cached_read_takes_the_query_parameters_of_its_route_and_routers() -> None:
    (read,) = fast_reads(declared(_app().routes))
    assert read.template == "/api/v9/things/{thing_id}"
    assert read.lookup is _lookup
    assert read.query == {"limit", "cursor", "api-token"}


def test_only_a_get_route_is_answered_from_the_cache() -> None:
    router = APIRouter()

    @router.post("/x")
    @route_policy(cached=_lookup)
    async def x() -> None:
        return None

    app = FastAPI()
    app.include_router(router)
    with pytest.raises(ValueError, match="GET"):
        fast_reads(declared(app.routes))


def test_refinements_need_a_budget() -> None:
    with pytest.raises(ValueError, match="refine a rate budget"):
        RoutePolicy(account_field="email")
    with pytest.raises(ValueError, match="account_token"):
        RoutePolicy(rate="auth", account_token="mfa")
