"""Idempotency at the HTTP edge: the `Idempotency-Key` header as a dependency, and the
stored answer of an operation as the response (docs/decisions/0004-idempotency-keys.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header
from starlette.responses import Response

from storefront.idempotency import MAX_KEY_LENGTH, StoredResponse
from storefront.kit.errors import IdempotencyKeyMissing, UnprocessableEntity
from storefront.kit.inputs import STORABLE


async def require_key(  # async: no thread-pool hop per request
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_LENGTH), STORABLE
    ] = None,
) -> str:
    """FastAPI dependency: the header is mandatory on idempotent-by-key operations."""
    if idempotency_key is None or not idempotency_key.strip():
        raise IdempotencyKeyMissing("Send an Idempotency-Key header (a fresh UUID per operation).")
    if not idempotency_key.isprintable():
        raise UnprocessableEntity("Idempotency-Key must be printable ASCII.")
    return idempotency_key.strip()


def stored_response(stored: StoredResponse) -> Response:
    """The HTTP response for an operation's answer; a replayed one says so."""
    headers = dict(stored.headers)
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(stored.body, stored.status, headers=headers, media_type=stored.media_type)
