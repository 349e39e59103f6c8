"""HAL (draft-kelly-json-hal) for API v2: links, embedded resources, pages, and the response
that negotiates its media type.

A resource is a plain dict: ``_links`` first, then its properties, then ``_embedded``. Link
relations are IANA's registered names where one fits (``self``, ``collection``, ``item``,
``first``, ``next``, ``prev``, ``edit``) and ours otherwise, written as the CURIE ``sf:<name>``
that expands to ``https://storefront.dev/rels/<name>`` (documented in docs/api.md; a client
compares the names, it never needs to fetch them). Action links (``sf:pay``, ``sf:cancel``,
``sf:refund``, ``sf:archive``) appear only when the caller may take the action now.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import msgpack
import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from storefront.kit.inputs import STORABLE
from storefront.kit.negotiation import negotiate
from storefront.web.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_CURSOR_LENGTH,
    MAX_PAGE_SIZE,
    MAX_SEQ,
    InvalidCursor,
)
from storefront.web.paths import API_V2_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES

HAL_JSON = "application/hal+json"
JSON = "application/json"
MSGPACK = "application/msgpack"
# most preferred first: HAL is v2's default (no Accept, */*, application/*); MessagePack
# carries the same document
OFFERS = (HAL_JSON, JSON, MSGPACK)

REL_NAMESPACE = "https://storefront.dev/rels/"
CURIES = [{"name": "sf", "href": REL_NAMESPACE + "{rel}", "templated": True}]

# our link relations (docs/api.md, "Link relations"); the method each one takes is documented
# there, as HAL links carry none
SHOP = "sf:shop"
PRODUCTS = "sf:products"
PRODUCT = "sf:product"
ORDERS = "sf:orders"
ORDER = "sf:order"
PAYMENTS = "sf:payments"
PAY = "sf:pay"
CANCEL = "sf:cancel"
REFUND = "sf:refund"
ARCHIVE = "sf:archive"
CUSTOMER = "sf:customer"
# the entry point, the account and the shared sign-in surface (decision 0206)
ME = "sf:me"
MY_SHOPS = "sf:my-shops"
OPEN_SHOP = "sf:open-shop"
REGISTER = "sf:register"
LOGIN = "sf:login"
REFRESH = "sf:refresh"
LOGOUT = "sf:logout"
SESSIONS = "sf:sessions"
REVOKE = "sf:revoke"
PASSWORD_CHANGE = "sf:password"  # noqa: S105 (a link relation)
MFA_ENROL = "sf:mfa-enrol"
MFA_CONFIRM = "sf:mfa-confirm"
MFA_REMOVE = "sf:mfa-remove"
# privacy
EXPORTS = "sf:exports"
DOWNLOAD = "sf:download"
CONSENTS = "sf:consents"
ERASE = "sf:erase"
# shop management
MEMBER = "sf:member"
DELETE = "sf:delete"
ORDER_LIMITS = "sf:order-limits"
CATALOG_SUMMARY = "sf:catalog-summary"
BULK = "sf:bulk"
SALES = "sf:sales"
AUDIT = "sf:audit"
ADMIN_AUDIT = "sf:admin-audit"
WEBHOOKS = "sf:webhooks"
EDIT = "edit"  # IANA: PATCH the target (with If-Match where the resource has an ETag)
RELATIONS = (
    SHOP,
    PRODUCTS,
    PRODUCT,
    ORDERS,
    ORDER,
    PAYMENTS,
    PAY,
    CANCEL,
    REFUND,
    ARCHIVE,
    ME,
    MY_SHOPS,
    OPEN_SHOP,
    REGISTER,
    LOGIN,
    REFRESH,
    LOGOUT,
    SESSIONS,
    REVOKE,
    PASSWORD_CHANGE,
    MFA_ENROL,
    MFA_CONFIRM,
    MFA_REMOVE,
    EXPORTS,
    DOWNLOAD,
    CONSENTS,
    ERASE,
    MEMBER,
    DELETE,
    ORDER_LIMITS,
    CATALOG_SUMMARY,
    BULK,
    SALES,
    AUDIT,
    ADMIN_AUDIT,
    WEBHOOKS,
    CUSTOMER,
)

Link = dict[str, Any]
Resource = dict[str, Any]


class HALResponse(JSONResponse):
    """What a v2 route answers: the documents name ``application/hal+json`` with the route's
    response model; the body is rendered already (HAL JSON or MessagePack)."""

    media_type = HAL_JSON

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


def problems(
    *codes: int,
    example: Any = None,
    ok: int = 200,
    links: Mapping[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The error responses an operation can actually return, for its documentation; every
    v2 route validates its input (422), negotiates (406) and may be refused by the API
    protection (429, 503). Each carries an example problem; ``example`` is the success
    response's example (status ``ok``), ``links`` its OpenAPI links (see :func:`op_link`)."""
    out: dict[int | str, dict[str, Any]] = {}
    if example is not None:
        out[ok] = {"content": {HAL_JSON: {"example": example}}}
    if links:
        out.setdefault(ok, {})["links"] = dict(links)
    for code in sorted({*codes, 406, 422, 429, 503}):
        base = PROBLEM_RESPONSES.get(code) or {
            **PROBLEM_RESPONSES[400],
            "description": HTTPStatus(code).phrase,
        }
        out[code] = {
            **base,
            "content": {"application/problem+json": {"example": _problem_example(code)}},
        }
        if code in _PROBLEM_DESCRIPTIONS:
            out[code]["description"] = _PROBLEM_DESCRIPTIONS[code]
    return out


def op_link(
    operation_id: str, description: str, body: Any = None, **parameters: str
) -> dict[str, Any]:
    """An OpenAPI link (3.1, "Link Object") from a response to the operation a HAL link of
    that response leads to, for tools that chain operations (the stateful contract test):
    ``parameters`` are runtime expressions by ``<in>.<name>`` (``path.shop_id``), written
    with ``__`` for the dot and ``_`` for ``-`` in a header's name."""
    out: dict[str, Any] = {
        "operationId": operation_id,
        "description": description,
        "parameters": {
            name.replace("__", ".", 1).replace("_", "-")
            if name.startswith("header__")
            else name.replace("__", ".", 1): value
            for name, value in parameters.items()
        },
    }
    if body is not None:
        # the body to send, in an extension: the gate's OpenAPI validator refuses an object
        # as a link's requestBody; tests/security/fuzz.py moves it into requestBody
        out["x-request-body"] = body
    return out


def _problem_example(code: int) -> dict[str, Any]:
    phrase = HTTPStatus(code).phrase
    slug = _PROBLEM_SLUGS.get(code, "error")
    out: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": phrase,
        "status": code,
        "detail": _PROBLEM_DETAILS.get(code, phrase + "."),
        "instance": "/api/v2/...",
    }
    if code == 406:
        out["available"] = list(OFFERS)
    return out


_PROBLEM_SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    402: "payment-method-rejected",
    403: "forbidden",
    404: "not-found",
    406: "not-acceptable",
    409: "conflict",
    410: "gone",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    503: "unavailable",
    504: "timeout",
}
_PROBLEM_DESCRIPTIONS = {
    402: "Declined: nothing charged",
    406: "None of the offered media types is acceptable (listed)",
    410: "Gone (expired)",
    504: "The payment provider did not answer",
}
_PROBLEM_DETAILS = {
    402: "The payment method was declined; nothing was charged.",
    401: "Sign in: send Authorization: Bearer <access token>.",
    403: "Only the shop's owners may do this.",
    404: "No such resource, or not yours.",
    406: "Nothing acceptable: see available.",
    409: "The resource's state does not allow this now.",
    412: "If-Match does not match the current ETag.",
    413: "The request body is larger than this operation takes.",
    415: "Send application/json or application/msgpack.",
    422: "The request is not valid: see errors.",
    429: "Too many requests: retry after Retry-After seconds.",
    503: "A dependency is unavailable: retry after Retry-After seconds.",
}


# --- documented shapes (the OpenAPI document of v2; the bodies are built as dicts) ----------


class LinkOut(BaseModel):
    href: str
    templated: bool | None = None
    title: str | None = None


class MoneyOut(BaseModel):
    amount: str = Field(description="decimal string in the currency's minor unit (ISO 4217)")
    currency: str = Field(description="ISO 4217 code")


class HalOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    links: dict[str, LinkOut | list[LinkOut] | list[dict[str, Any]]] = Field(
        alias="_links",
        description="self and related resources; action links only when allowed now",
    )


def v2(path: str) -> str:
    """The v2 URL of ``path`` (``/shops/...``); relative, as v1's pagination links are."""
    return API_V2_PREFIX + path


def link(href: str, *, title: str | None = None, templated: bool = False) -> Link:
    out: Link = {"href": href}
    if templated:
        out["templated"] = True
    if title is not None:
        out["title"] = title
    return out


def resource(
    links: Mapping[str, Link | list[Link]],
    properties: Mapping[str, Any],
    embedded: Mapping[str, list[Resource] | Resource] | None = None,
) -> Resource:
    """A HAL resource; ``curies`` are added when any link uses them."""
    all_links: dict[str, Any] = dict(links)
    if any(rel.startswith("sf:") for rel in all_links):
        all_links["curies"] = CURIES
    out: Resource = {"_links": all_links, **properties}
    if embedded:
        out["_embedded"] = dict(embedded)
    return out


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (a naive value, as SQLite returns, is UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ident(value: uuid.UUID | None) -> str | None:
    """Ids are strings in v2."""
    return None if value is None else str(value)


# --- pages -------------------------------------------------------------------------------
# v2 cursors are v1's (keyset: the id to continue after) plus where the page before started,
# so a page can link back one step: {"id": <after>, "prev": <the previous page's after, or ""
# when the previous page is the first>}. A page reached through its ``prev`` link no longer
# knows the page before it and offers ``first`` instead.


def _encode(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


class CursorV2:
    __slots__ = ("after", "prev")

    def __init__(self, after: uuid.UUID | None, prev: uuid.UUID | bool | None) -> None:
        self.after = after  # continue after this id (None: the first page)
        # the previous page's ``after``: None is the first page, False unknown
        self.prev = prev


def decode_cursor_v2(cursor: str | None) -> CursorV2:
    if cursor is None:
        return CursorV2(None, False)
    try:
        data = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        after = uuid.UUID(hex=data["id"])
        prev_raw = data.get("prev", False)
        prev: uuid.UUID | bool | None
        if prev_raw is False:
            prev = False
        elif prev_raw == "":
            prev = None
        else:
            prev = uuid.UUID(hex=prev_raw)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidCursor("The cursor is malformed; use the page's links as returned.") from exc
    return CursorV2(after, prev)


def encode_cursor_v2(after: uuid.UUID, prev: uuid.UUID | bool | None) -> str:
    data = {"id": after.hex}
    if prev is not False:
        data["prev"] = "" if prev is None else prev.hex  # type: ignore[union-attr]
    return _encode(data)


class PageParamsV2:
    __slots__ = ("cursor", "limit")

    def __init__(self, limit: int, cursor: CursorV2) -> None:
        self.limit = limit
        self.cursor = cursor

    @property
    def after(self) -> uuid.UUID | None:
        return self.cursor.after


async def page_params_v2(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH), STORABLE] = None,
) -> PageParamsV2:
    return PageParamsV2(limit, decode_cursor_v2(cursor))


PageParamsV2Dep = Annotated[PageParamsV2, Depends(page_params_v2)]


def _page_url(request: Request, cursor: str | None) -> str:
    url = request.url.remove_query_params("cursor")
    if cursor is not None:
        url = url.include_query_params(cursor=cursor)
    return f"{url.path}?{url.query}" if url.query else url.path


def page_links(
    request: Request, params: PageParamsV2, next_after: uuid.UUID | None
) -> dict[str, Link]:
    """``self``, ``first``, and ``next``/``prev`` where they exist."""
    links: dict[str, Link] = {
        "self": link(_page_url(request, request.query_params.get("cursor"))),
        "first": link(_page_url(request, None)),
    }
    if next_after is not None:
        links["next"] = link(_page_url(request, encode_cursor_v2(next_after, params.after)))
    prev = params.cursor.prev
    if params.after is not None and prev is not False:
        previous = None if prev is None else encode_cursor_v2(prev, False)  # type: ignore[arg-type]
        links["prev"] = link(_page_url(request, previous))
    return links


def page(
    request: Request,
    params: PageParamsV2,
    next_after: uuid.UUID | None,
    rel: str,
    items: Sequence[Resource],
    extra_links: Mapping[str, Link] | None = None,
) -> Resource:
    """A page of a collection: its items embedded under ``rel``, and how many are here."""
    return resource(
        {**page_links(request, params, next_after), **(extra_links or {})},
        {"count": len(items)},
        {rel: list(items)},
    )


# --- the response ------------------------------------------------------------------------


async def accepted(request: Request) -> str:
    """The media type this request's v2 resource goes out as, decided before any work is done
    (a 406 problem, listing what is offered, when none is acceptable)."""
    return negotiate(request.headers.get("accept"), OFFERS)


Accepted = Annotated[str, Depends(accepted)]


def accepted_among(offers: Sequence[str]) -> Any:
    """``Accepted`` for a route with offers of its own (a collection that also streams)."""

    async def negotiate_offers(request: Request) -> str:
        return negotiate(request.headers.get("accept"), offers)

    return Depends(negotiate_offers)


def hal_response(
    body: Resource,
    media_type: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HALResponse:
    """``body`` as HAL (the default), plain ``application/json`` or MessagePack (the same
    document); always ``Vary: Accept``, plus what ``headers`` name in their own ``Vary``
    (``Authorization`` where the links depend on the caller)."""
    merged = dict(headers or {})
    merged["Vary"] = vary("Accept", merged.pop("Vary", ""))
    return HALResponse(
        msgpack.packb(body) if media_type == MSGPACK else encode(body),
        status_code=status_code,
        media_type=media_type,
        headers=merged,
    )


def vary(*values: str) -> str:
    """One ``Vary`` value naming each field of ``values`` (comma lists) once, in order."""
    fields: dict[str, str] = {}
    for value in values:
        for field in value.split(","):
            name = field.strip()
            if name:
                fields.setdefault(name.lower(), name)
    return ", ".join(fields.values())


def encode(body: Resource) -> bytes:
    """The document as stored (an idempotent operation's answer): JSON."""
    return orjson.dumps(body)


def transcode(stored: bytes, media_type: str) -> bytes:
    """A stored JSON document in the negotiated media type."""
    return bytes(msgpack.packb(orjson.loads(stored))) if media_type == MSGPACK else stored


# --- pages of a log read newest first (the audit log): sequence-number cursors -----------
# {"seq": <continue below this>, "prev": <the previous page's seq, 0 for the first page>}


class SeqPageParamsV2:
    __slots__ = ("after", "limit", "prev")

    def __init__(self, limit: int, after: int | None, prev: int | bool | None) -> None:
        self.limit = limit
        self.after = after  # the last sequence number of the previous page (None: first)
        self.prev = prev  # that page's own ``after``: None the first page, False unknown


def _seq(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SEQ:
        raise ValueError("not a sequence number")
    return value


def decode_seq_cursor_v2(cursor: str | None) -> tuple[int | None, int | bool | None]:
    if cursor is None:
        return None, False
    try:
        data = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        after = _seq(data["seq"])
        prev_raw = data.get("prev", False)
        prev: int | bool | None
        if prev_raw is False:
            prev = False
        elif prev_raw == 0:
            prev = None
        else:
            prev = _seq(prev_raw)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidCursor("The cursor is malformed; use the page's links as returned.") from exc
    return after, prev


def encode_seq_cursor_v2(after: int, prev: int | bool | None) -> str:
    data: dict[str, int] = {"seq": after}
    if prev is not False:
        data["prev"] = 0 if prev is None else int(prev)
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


async def seq_page_params_v2(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH), STORABLE] = None,
) -> SeqPageParamsV2:
    after, prev = decode_seq_cursor_v2(cursor)
    return SeqPageParamsV2(limit, after, prev)


SeqPageParamsV2Dep = Annotated[SeqPageParamsV2, Depends(seq_page_params_v2)]


def seq_page(
    request: Request,
    params: SeqPageParamsV2,
    next_after: int | None,
    rel: str,
    items: Sequence[Resource],
    extra_links: Mapping[str, Link] | None = None,
) -> Resource:
    """A page of a log: ``self``, ``first``, ``next`` and ``prev`` as for :func:`page`."""
    links: dict[str, Link] = {
        "self": link(_page_url(request, request.query_params.get("cursor"))),
        "first": link(_page_url(request, None)),
    }
    if next_after is not None:
        links["next"] = link(_page_url(request, encode_seq_cursor_v2(next_after, params.after)))
    if params.after is not None and params.prev is not False:
        previous = None if params.prev is None else encode_seq_cursor_v2(int(params.prev), False)
        links["prev"] = link(_page_url(request, previous))
    return resource({**links, **(extra_links or {})}, {"count": len(items)}, {rel: list(items)})


# --- the document --------------------------------------------------------------------------


def document_bodies(app: FastAPI) -> None:
    """Every v2 operation that takes a body may also be refused by the API protection
    before its route runs: 413 (too large) and 415 (not JSON or MessagePack). Added to the
    OpenAPI document of each such operation, with an example problem."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for path, item in schema.get("paths", {}).items():
            if not path.startswith(API_V2_PREFIX):
                continue
            for operation in item.values():
                if "requestBody" not in operation:
                    continue
                for code in (413, 415):
                    operation["responses"].setdefault(
                        str(code),
                        {
                            "description": PROBLEM_RESPONSES[code]["description"],
                            "content": {
                                "application/problem+json": {
                                    "schema": {"$ref": "#/components/schemas/ProblemOut"},
                                    "example": _problem_example(code),
                                }
                            },
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
