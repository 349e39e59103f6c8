"""Calling /graphql in tests."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.support.factories import UserHandle


async def gql(
    client: httpx2.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    user: UserHandle | None = None,
    status: int = 200,
) -> dict[str, Any]:
    """POST a GraphQL document; the response's JSON (data and errors)."""
    r = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=user.auth if user is not None else {},
    )
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of each error of a response."""
    return [error["extensions"]["code"] for error in body.get("errors") or []]


def data(body: dict[str, Any]) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    assert not body.get("errors"), body.get("errors")
    result: dict[str, Any] = body["data"]
    return result
