"""The Host header is the client's to write: nothing the service sends back may be built from it."""

from __future__ import annotations

import httpx2
import pytest

from tests.support.factories import V1
from tests.support.problems import assert_problem

SOME_ID = "0190a6d2-1234-7000-8000-00000000abcd"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"{V1}/auth/sessions/"),
        ("GET", f"{V1}/shops/{SOME_ID}/products/"),
        ("GET", f"{V1}/users/me/"),
    ],
)
async def test_trailing_slash_is_a_404_not_a_redirect_to_the_callers_host(
    client: httpx2.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path, headers={"Host": "evil.example"})

    assert "location" not in r.headers
    assert "evil.example" not in r.text
    assert_problem(r, 404, slug="not-found", instance=path)
