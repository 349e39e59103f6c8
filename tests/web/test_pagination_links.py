"""Pagination ``Link`` headers never reflect the ``Host`` header.

A client-chosen Host went into ``Link: <http://evil.example/...>; rel="next"`` (and into the
response cache with it, for every later reader of that page). Links are now relative
(RFC 8288 resolves them against the request's URI) or, with ``STOREFRONT_PUBLIC_BASE_URL``,
absolute under the configured public address.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from storefront.app import create_app
from tests.conftest import make_settings
from tests.support.factories import Api, UserHandle
from tests.support.paths import V1
from tests.web.test_rate_limit import client_for, serving

EVIL = "evil.example"
LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def _listings(api: Api, owner: UserHandle) -> list[tuple[str, dict[str, str]]]:
    """(path, headers) of paginated listings, each with more than one page."""
    shop = await api.shop(owner)
    for _ in range(3):
        await api.product(owner, shop)
    return [
        (f"{V1}/shops/{shop['id']}/products", {}),  # the cached catalog read (fast path too)
        (f"{V1}/shops/{shop['id']}/audit-events", owner.auth),
    ]


def _next(r: httpx2.Response) -> str:
    assert r.status_code == 200, r.text
    match = LINK_NEXT.match(r.headers["Link"])
    assert match, r.headers["Link"]
    return match["url"]


async def test_a_hostile_host_header_never_reaches_the_link(api: Api) -> None:
    owner = await api.user()
    for path, headers in await _listings(api, owner):
        for host in (EVIL, f"{EVIL}:443", "testserver"):  # the last one fills the cache first
            r = await api.client.get(path, params={"limit": 1}, headers={**headers, "Host": host})
            url = _next(r)
            assert EVIL not in url
            assert url.startswith(f"{path}?"), url  # relative: the request's own path
            # and it is followable as is
            follow = await api.client.get(url, headers=headers)
            assert follow.status_code == 200, follow.text


@pytest.fixture
async def public_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url, public_base_url="https://api.shop.example/")
    app = create_app(settings)
    async with serving(app):
        yield app


async def test_links_use_the_configured_public_base_url(public_app: FastAPI) -> None:
    async with client_for(public_app) as client:
        api = Api(client)
        owner = await api.user()
        for path, headers in await _listings(api, owner):
            r = await client.get(path, params={"limit": 1}, headers={**headers, "Host": EVIL})
            url = _next(r)
            assert url.startswith(f"https://api.shop.example{path}?"), url
            assert EVIL not in url


@pytest.mark.parametrize(
    "value",
    [
        "api.shop.example",
        "ftp://api.shop.example",
        "https://",
        "https://a.example/?x=1",
        "https://a.example/#top",
        "https://user:pw@a.example",
    ],
)
def test_an_unusable_public_base_url_is_refused(sqlite_url: str, value: str) -> None:
    with pytest.raises(ValidationError, match="STOREFRONT_PUBLIC_BASE_URL"):
        make_settings(sqlite_url, public_base_url=value)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("https://a.example/", "https://a.example"),
        ("http://a.example:8080/shop", "http://a.example:8080/shop"),
    ],
)
def test_a_public_base_url_is_kept_without_its_trailing_slash(
    sqlite_url: str, value: str, stored: Any
) -> None:
    assert make_settings(sqlite_url, public_base_url=value).public_base_url == stored
