"""v1 routes with a v2 successor announce it (Deprecation, Sunset, successor-version) and
every v1 request is counted by route; v1's paginated listings keep their Link header as it
was, and routes without a successor say nothing (decision 0143)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from prometheus_client import REGISTRY

from storefront.settings import Settings
from tests.support.factories import Api, shop_with_staff


def v1_count(method: str, route: str, successor: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_api_v1_requests_total",
        {"method": method, "route": route, "successor": successor},
    )
    return value or 0.0


async def test_a_v1_route_with_a_successor_announces_it(api: Api, settings: Settings) -> None:
    owner = await api.user()
    shop = await api.shop(owner)
    before = v1_count("GET", "/api/v1/shops/{shop_id}", "true")

    r = await api.client.get(f"/api/v1/shops/{shop['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["deprecation"] == f"@{int(settings.api.v1_deprecated_at.timestamp())}"
    assert parsedate_to_datetime(r.headers["sunset"]) == settings.api.v1_sunset_at
    assert r.headers["sunset"].endswith(" GMT")
    assert r.headers["link"] == f'</api/v2/shops/{shop["id"]}>; rel="successor-version"'
    assert v1_count("GET", "/api/v1/shops/{shop_id}", "true") == before + 1
    # the successor answers
    assert (await api.client.get(f"/api/v2/shops/{shop['id']}")).status_code == 200
    # v2 itself is not deprecated
    r = await api.client.get(f"/api/v2/shops/{shop['id']}")
    assert "deprecation" not in r.headers
    assert "sunset" not in r.headers


async def test_routes_without_a_successor_and_paginated_listings(api: Api) -> None:
    _owner, staff, shop = await shop_with_staff(api)
    for _ in range(3):
        await api.product(staff, shop)
    # the token-issuing routes are the shared auth surface of both versions (decision 0206)
    before = v1_count("POST", "/api/v1/auth/refresh", "false")
    r = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r.status_code == 401, r.text
    assert "deprecation" not in r.headers
    assert "link" not in r.headers
    assert v1_count("POST", "/api/v1/auth/refresh", "false") == before + 1
    # the account has a v2 successor now
    r = await api.client.get("/api/v1/users/me", headers=staff.auth)
    assert r.status_code == 200, r.text
    assert r.headers["link"] == '</api/v2/users/me>; rel="successor-version"'

    # a listing's Link is its rel="next" alone; the last page has none, as before
    r = await api.client.get(f"/api/v1/shops/{shop['id']}/products?limit=2")
    assert r.headers["deprecation"].startswith("@")
    assert r.headers["link"].endswith('; rel="next"')
    assert "successor-version" not in r.headers["link"]
    r = await api.client.get(f"/api/v1/shops/{shop['id']}/products?limit=10")
    assert "link" not in r.headers
    assert r.headers["deprecation"].startswith("@")


async def test_the_successor_link_keeps_the_path_as_sent(api: Api) -> None:
    # a decoded path may hold control characters no header can carry
    r = await api.client.get("/api/v1/shops/%0B%C3%88x")
    assert r.status_code == 422, r.text
    assert r.headers["link"] == '</api/v2/shops/%0B%C3%88x>; rel="successor-version"'


def test_sunset_must_follow_deprecation() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(
            api={
                "v1_deprecated_at": datetime(2027, 1, 1, tzinfo=UTC),
                "v1_sunset_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        )


async def test_the_v1_document_names_the_headers_where_they_are_sent(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]

    def headers(path: str, method: str, status: str) -> set[str]:
        response = paths[path][method]["responses"][status]
        return set(response.get("headers", {}))

    # a successor: every response names Deprecation, Sunset and the successor Link
    assert headers("/api/v1/users/me", "get", "200") == {"Deprecation", "Sunset", "Link"}
    assert headers("/api/v1/users/me", "get", "401") == {"Deprecation", "Sunset", "Link"}
    # a paginated listing: its Link is the next page, as before
    assert headers("/api/v1/shops/{shop_id}/products", "get", "200") == {"Deprecation", "Sunset"}
    # the shared sign-in surface and v2 itself: nothing
    assert headers("/api/v1/auth/login", "post", "200") == set()
    assert headers("/api/v2/users/me", "get", "200") == set()
    link = document["components"]["headers"]["SuccessorLink"]
    assert "successor-version" in link["description"]
