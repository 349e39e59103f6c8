"""Assertions shared by the API tests: RFC 9457 problem bodies and baseline headers."""

from __future__ import annotations

from typing import Any

import httpx2

PROBLEM_JSON = "application/problem+json"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(
    r: httpx2.Response,
    status: int,
    slug: str | None = None,
    *,
    instance: str | None = None,
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and problem type ``slug``, when
    given); ``instance`` is the request's path unless told otherwise. Returns the body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    missing = PROBLEM_KEYS - body.keys()
    assert not missing, f"problem body lacks {missing}: {body}"
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["type"], str)
    assert body["type"]
    if slug is not None:
        assert body["type"] == f"/problems/{slug}", body
    if instance is not None:
        assert body["instance"] == instance, body
    else:
        assert body["instance"] == r.request.url.path, body
    return body


def without_request_specific(body: dict[str, Any]) -> dict[str, Any]:
    """A problem body minus the fields that differ from one request to the next."""
    return {k: v for k, v in body.items() if k not in {"request_id", "instance", "trace_id"}}
