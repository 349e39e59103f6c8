"""The JSON body guard cannot be bypassed by a document only Python's parser accepts: ``NaN``,
``Infinity``, lone surrogates or UTF-16 made the guard's (strict, RFC 8259) parse fail, and the
guard then skipped its depth and size check and let FastAPI's lenient parse through. Such a
body is now the same 422 as any malformed JSON, before the schema sees it, on every route."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest
from sqlalchemy import func, select

from storefront.identity.models import User
from storefront.resources import Resources
from tests.support.factories import V1
from tests.support.problems import assert_problem

BASE = {"email": "nan@example.com", "password": "a-long-password-1", "display_name": "N"}


def _deep(levels: int) -> Any:
    nested: Any = "x"
    for _ in range(levels):
        nested = [nested]
    return nested


async def _users(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


def _invalid_json(r: httpx2.Response) -> None:
    body = assert_problem(r, 422)
    assert [e["type"] for e in body["errors"]] == ["json_invalid"], body


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
async def test_deep_nesting_with_a_non_json_number_is_refused_before_the_schema(
    client: httpx2.AsyncClient, resources: Resources, token: str
) -> None:
    # 40 levels (over the limit of 32) with NaN at the bottom: NaN is not JSON
    deep = orjson.dumps({**BASE, "extra": _deep(40)}).replace(b'"x"', token.encode())
    r = await client.post(
        f"{V1}/auth/register", content=deep, headers={"Content-Type": "application/json"}
    )
    _invalid_json(r)
    # and NaN alone, where a number is expected, is malformed JSON too (not a validation
    # error about the number)
    flat = orjson.dumps({**BASE, "extra": 1}).replace(b":1}", f":{token}}}".encode())
    r = await client.post(
        f"{V1}/auth/register", content=flat, headers={"Content-Type": "application/json"}
    )
    _invalid_json(r)
    assert await _users(resources) == 0


@pytest.mark.parametrize(
    "raw",
    [
        # deep nesting and a lone surrogate (Python's parser takes it, RFC 8259 text is UTF-8)
        orjson.dumps({**BASE, "extra": _deep(40)}).replace(b'"x"', b'"\\ud800"'),
        # UTF-16: Python's parser detects it; JSON between systems is UTF-8 (RFC 8259 8.1)
        orjson.dumps({**BASE, "extra": _deep(40)}).decode().encode("utf-16"),
    ],
)
async def test_other_lenient_parses_do_not_skip_the_guard(
    client: httpx2.AsyncClient, resources: Resources, raw: bytes
) -> None:
    r = await client.post(
        f"{V1}/auth/register", content=raw, headers={"Content-Type": "application/json"}
    )
    _invalid_json(r)
    assert await _users(resources) == 0


async def test_a_valid_body_still_passes_the_guard(
    client: httpx2.AsyncClient, resources: Resources
) -> None:
    r = await client.post(f"{V1}/auth/register", json={**BASE, "display_name": "N 1.5e3"})
    assert r.status_code == 201, r.text
    assert await _users(resources) == 1
