"""Response helpers shared by the routes: caching headers and documented problem responses."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

NO_STORE = "no-store"
# the headers of an answer about its caller alone: no cache keeps it
PERSONAL = {"Cache-Control": NO_STORE}


def no_store(response: Response) -> None:
    response.headers["Cache-Control"] = NO_STORE


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None


_PROBLEM = {"model": ProblemOut, "content": {"application/problem+json": {}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {**_PROBLEM, "description": desc}
    for code, desc in {
        400: "Bad request",
        401: "Not signed in",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        412: "Precondition failed",
        422: "Validation error",
        # API protection (storefront/protection.py): any route may answer these
        413: "Request body too large",
        415: "Unsupported media type",
        429: "Rate limit exceeded (see Retry-After, RateLimit)",
        503: "Overloaded or unavailable (see Retry-After)",
        504: "Request deadline exceeded; nothing was changed",
    }.items()
}
