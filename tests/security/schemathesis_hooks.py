"""Schemathesis checks of our own, loaded by fuzz.py through SCHEMATHESIS_HOOKS."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2
import schemathesis

from storefront.seed import DEMO_PASSWORD

PROBLEM_KEYS = {"type", "title", "status", "detail"}


@schemathesis.check
def errors_are_problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is an RFC 9457 problem whose status matches the response's."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered with {content_type!r}, not application/problem+json"
        )
    body = json.loads(response.content)
    missing = PROBLEM_KEYS - set(body)
    if missing:
        raise AssertionError(f"problem body lacks {sorted(missing)}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} != HTTP {response.status_code}")
    return None


@schemathesis.auth(refresh_interval=300)  # and again after any 401 (the fuzzer may log out)
class DemoOwner:
    """Signs in as the seeded shop owner so protected routes are fuzzed past their 401."""

    def get(self, case: Any, ctx: Any) -> str:
        base = os.environ["STOREFRONT_FUZZ_BASE"]
        response = httpx2.post(
            f"{base}/api/v1/auth/login",
            json={"email": "owner@storefront.test", "password": DEMO_PASSWORD},
            timeout=10,
        )
        body = response.json()
        if response.status_code != 200 or "access_token" not in body:
            raise RuntimeError(f"demo sign-in failed: {response.status_code} {body}")
        return str(body["access_token"])

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
