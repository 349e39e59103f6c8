"""Helpers for the GDPR tests (exports, erasure, consents, retention)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt

from storefront.resources import Resources
from tests.support.factories import V1, UserHandle

ME = f"{V1}/users/me"
EXPORTS = f"{V1}/users/me/exports"
CONSENTS = f"{V1}/users/me/consents"


async def request_export(client: httpx2.AsyncClient, user: UserHandle) -> dict[str, Any]:
    r = await client.post(EXPORTS, headers=user.auth)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert r.headers["location"] == f"{EXPORTS}/{body['id']}"
    return body


async def wait_for_export(
    client: httpx2.AsyncClient, user: UserHandle, export_id: str, wait_seconds: float = 20.0
) -> dict[str, Any]:
    """Poll the status until the (in-process) job has finished."""
    deadline = time.monotonic() + wait_seconds
    while True:
        r = await client.get(f"{EXPORTS}/{export_id}", headers=user.auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] not in {"queued", "running"}:
            return body
        assert time.monotonic() < deadline, f"export still {body['status']}"
        await asyncio.sleep(0.05)


def stale_token(resources: Resources, access: str, minutes: int = 11) -> str:
    """The same session's access token, but with a sign-in older than recent-auth allows."""
    claims = jwt.decode(access, options={"verify_signature": False})
    return resources.tokens.issue(
        claims["sub"],
        session_id=claims["sid"],
        auth_time=datetime.now(UTC) - timedelta(minutes=minutes),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
