"""Keyset (cursor) pagination: opaque cursors and RFC 8288 ``Link: rel="next"`` headers."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from storefront.kit.errors import UnprocessableEntity
from storefront.kit.inputs import STORABLE

T = TypeVar("T")
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_CURSOR_LENGTH = 256  # characters of a cursor a route accepts (longer: 422)
MAX_SEQ = 2**63 - 1  # a sequence number is a BIGINT; a larger one would reach the driver


class InvalidCursor(UnprocessableEntity):
    slug = "invalid-cursor"
    title = "Invalid cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    padded = cursor + "=" * (-len(cursor) % 4)
    return orjson.loads(base64.urlsafe_b64decode(padded.encode()))


_MALFORMED = (
    binascii.Error,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,  # a non-string "id" (number, null, list...)
    orjson.JSONDecodeError,
)


def encode_cursor(last_id: uuid.UUID) -> str:
    return _encode({"id": last_id.hex})


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        return uuid.UUID(hex=_decode(cursor)["id"])
    except _MALFORMED as exc:
        raise InvalidCursor("The cursor is malformed; use next_cursor as returned.") from exc


def encode_seq_cursor(last_seq: int) -> str:
    """A cursor over a log ordered by a sequence number (e.g. the audit log, newest first)."""
    return _encode({"seq": last_seq})


def decode_seq_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        seq = _decode(cursor)["seq"]
    except _MALFORMED as exc:
        raise InvalidCursor("The cursor is malformed; use next_cursor as returned.") from exc
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:  # past BIGINT: no row has it
        raise InvalidCursor("The cursor is malformed; use next_cursor as returned.")
    return seq


class PageParams(BaseModel):
    limit: int
    after: uuid.UUID | None


async def page_params(  # async: no thread-pool hop (see get_resources)
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH), STORABLE] = None,
) -> PageParams:
    return PageParams(limit=limit, after=decode_cursor(cursor))


def _public_base_url(request: Request) -> str:
    settings = getattr(getattr(request.scope.get("app"), "state", None), "settings", None)
    base = getattr(settings, "public_base_url", None)
    return base if isinstance(base, str) else ""


def next_link(request: Request, next_cursor: str) -> str:
    """The RFC 8288 ``Link`` value pointing at the next page: the request's own path and
    query with the cursor, relative (resolved against the request's URI) or under
    ``STOREFRONT_PUBLIC_BASE_URL``. Never from the ``Host`` header: a client chooses that,
    and the link is cached with the page."""
    url = request.url.include_query_params(cursor=next_cursor)
    target = f"{url.path}?{url.query}" if url.query else url.path
    return f'<{_public_base_url(request)}{target}>; rel="next"'


def set_next_link(request: Request, response: Response, next_cursor: str | None) -> None:
    if next_cursor is None:
        return
    response.headers["Link"] = next_link(request, next_cursor)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


class SeqPageParams(BaseModel):
    limit: int
    after: int | None  # the last sequence number of the previous page


async def seq_page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH), STORABLE] = None,
) -> SeqPageParams:
    return SeqPageParams(limit=limit, after=decode_seq_cursor(cursor))


SeqPageParamsDep = Annotated[SeqPageParams, Depends(seq_page_params)]
