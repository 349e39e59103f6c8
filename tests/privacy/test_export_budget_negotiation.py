"""The streamed order export spends the expensive budget whatever Accept says:
the rate-limit rule negotiates with the route's own function and offers, so an
``Accept`` the route answers with a stream (``text/*``, ``*/*;q=0.1, text/csv``, parameters,
case variants) is charged as one, and one it answers with the JSON page is not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from storefront.app import create_app
from tests.conftest import make_settings
from tests.support.factories import Api
from tests.support.paths import V1
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import GENEROUS, client_for, serving

CSV = "text/csv"
NDJSON = "application/x-ndjson"


@pytest.fixture
async def tight_app(database_url: str) -> AsyncIterator[FastAPI]:
    protection = {**GENEROUS, "expensive_rate": "1/minute", "user_rate": "1000/minute"}
    app = create_app(make_settings(database_url, protection=protection))
    async with serving(app):
        yield app


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [
        ("text/*", CSV),
        ("*/*;q=0.1, text/csv", CSV),
        ("text/csv; charset=utf-8", CSV),
        ("TEXT/CSV", CSV),
        ("Text/Csv;Q=1", CSV),
        ("application/json;q=0.5, application/x-ndjson", NDJSON),
        ("Application/X-NDJSON", NDJSON),
        ("text/html, text/*;q=0.2", CSV),
    ],
)
async def test_an_accept_that_negotiates_a_stream_spends_the_export_budget(
    tight_app: FastAPI, accept: str, streamed: str
) -> None:
    async with client_for(tight_app) as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        orders = f"{V1}/shops/{shop['id']}/orders"
        first = await client.get(orders, headers={**owner.auth, "Accept": accept})
        assert first.status_code == 200, first.text
        assert first.headers["content-type"].startswith(streamed)
        assert first.headers["RateLimit-Policy"] == '"expensive";q=1;w=60'
        again = await client.get(orders, headers={**owner.auth, "Accept": accept})
        assert_problem(again, 429)
        # a plain export header is refused too: it is one budget
        plain = await client.get(orders, headers={**owner.auth, "Accept": streamed})
        assert_problem(plain, 429)


@pytest.mark.parametrize("accept", [None, "*/*", "application/*", "application/json"])
async def test_the_json_page_stays_on_the_user_budget(
    tight_app: FastAPI, accept: str | None
) -> None:
    async with client_for(tight_app) as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        orders = f"{V1}/shops/{shop['id']}/orders"
        headers = {**owner.auth, **({"Accept": accept} if accept is not None else {})}
        for _ in range(3):
            r = await client.get(orders, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["RateLimit-Policy"] == '"user";q=1000;w=60'
        # the export budget is untouched
        export = await client.get(orders, headers={**owner.auth, "Accept": CSV})
        assert export.status_code == 200
        assert export.headers["RateLimit-Policy"] == '"expensive";q=1;w=60'


async def test_an_unacceptable_accept_is_a_406_on_the_user_budget(tight_app: FastAPI) -> None:
    async with client_for(tight_app) as client:
        api = Api(client)
        owner = await api.user()
        shop = await api.shop(owner)
        orders = f"{V1}/shops/{shop['id']}/orders"
        r = await client.get(orders, headers={**owner.auth, "Accept": "image/png"})
        assert_problem(r, 406)
        assert r.headers["RateLimit-Policy"] == '"user";q=1000;w=60'
