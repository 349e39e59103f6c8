"""The audit log in API v2 (HAL, decisions 0142 and 0206): a shop's entries for its owners
(minimised as in v1, decision 0116) and every entry for platform administrators, newest
first, in pages linked with ``first``, ``next`` and ``prev``. v1's dependencies and views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from storefront.audit.auth import AuditAdmin, ShopAuditReader
from storefront.audit.routes import AuditEventOut, _for_shop, _member_roles
from storefront.auditlog.log import newest_first
from storefront.auditlog.models import AuditEvent
from storefront.web.deps import SessionDep
from storefront.web.hal import (
    CURIES,
    SHOP,
    Accepted,
    HalOut,
    HALResponse,
    SeqPageParamsV2,
    SeqPageParamsV2Dep,
    hal_response,
    link,
    problems,
    seq_page,
    timestamp,
    v2,
)
from storefront.web.responses import PERSONAL

router = APIRouter(tags=["audit (v2)"])
SHOP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ENTRY_EXAMPLE = {
    "seq": 42,
    "occurred_at": "2026-12-07T05:15:05.123456Z",
    "actor_type": "user",
    "actor_role": "you",
    "actor_id": "0190a1b2-c3d4-7e5f-8a9b-000000000001",
    "action": "shop.member_set",
    "object_type": "membership",
    "object_id": "0190a1b2-c3d4-7e5f-8a9b-000000000002",
    "shop_id": SHOP_ID,
    "details": {"role": "staff"},
    "prev_hash": "9f2c...",
    "hash": "a41b...",
}


class AuditPageV2(HalOut):
    count: int
    embedded: dict[str, list[dict[str, Any]]] = Field(
        alias="_embedded", description="entries, newest first (v1's fields; ids as strings)"
    )


def _page_example(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "_links": {
            "self": {"href": path},
            "first": {"href": path},
            "next": {"href": f"{path}?cursor=eyJzZXEiOjQyfQ"},
            "curies": CURIES,
        },
        "count": 1,
        "_embedded": {"entries": [entry]},
    }


def _jsonable(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: (str(v) if v is not None and k.endswith("_id") else v) for k, v in entry.items()}
    out["occurred_at"] = timestamp(entry["occurred_at"])
    return out


async def _rows(
    session: SessionDep, params: SeqPageParamsV2, shop_id: Any
) -> tuple[list[AuditEvent], int | None]:
    rows: list[AuditEvent] = await newest_first(
        session, shop_id=shop_id, before=params.after, limit=params.limit + 1
    )
    next_after = rows[params.limit - 1].seq if len(rows) > params.limit else None
    return rows[: params.limit], next_after


@router.get(
    "/shops/{shop_id}/audit-events",
    response_model=AuditPageV2,
    response_class=HALResponse,
    responses=problems(
        401, 403, 404, example=_page_example(f"/api/v2/shops/{SHOP_ID}/audit-events", ENTRY_EXAMPLE)
    ),
    summary="This shop's audit entries, newest first, minimised (owners; `sf:audit`)",
)
async def shop_audit_events(
    owner: ShopAuditReader,
    session: SessionDep,
    request: Request,
    params: SeqPageParamsV2Dep,
    media_type: Accepted,
) -> HALResponse:
    shop_id, caller = owner.shop_id, owner.principal.user_id
    rows, next_after = await _rows(session, params, shop_id)
    actors = {row.actor_id for row in rows if row.actor_id is not None}
    roles = await _member_roles(session, shop_id, actors - {caller})
    items = [_jsonable(_for_shop(row, caller, roles).model_dump()) for row in rows]
    body = seq_page(
        request, params, next_after, "entries", items, {SHOP: link(v2(f"/shops/{shop_id}"))}
    )
    return hal_response(body, media_type, headers=PERSONAL)


@router.get(
    "/admin/audit-events",
    response_model=AuditPageV2,
    response_class=HALResponse,
    responses=problems(
        401,
        403,
        example=_page_example(
            "/api/v2/admin/audit-events",
            {
                **ENTRY_EXAMPLE,
                "client_address": "203.0.113.7",
                "request_id": "4bf92f3577b34da6",
                "trace_id": None,
                "chain_version": 2,
                "personal_commitment": None,
            },
        ),
    ),
    summary="Every audit entry, newest first (platform admins; `sf:admin-audit`)",
)
async def admin_audit_events(
    _admin: AuditAdmin,
    session: SessionDep,
    request: Request,
    params: SeqPageParamsV2Dep,
    media_type: Accepted,
) -> HALResponse:
    rows, next_after = await _rows(session, params, None)
    items = [_jsonable(AuditEventOut.model_validate(row).model_dump()) for row in rows]
    return hal_response(
        seq_page(request, params, next_after, "entries", items), media_type, headers=PERSONAL
    )
