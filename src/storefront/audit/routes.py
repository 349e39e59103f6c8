"""GET /shops/{shop_id}/audit-events (owners) and GET /admin/audit-events (platform admins).

Newest first, cursor-paginated by sequence number; never cached anywhere (``no-store``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from storefront.identity.deps import CurrentPrincipal
from storefront.platform.audit.log import newest_first
from storefront.platform.audit.models import AuditEvent
from storefront.platform.errors import Forbidden
from storefront.platform.http.deps import SessionDep
from storefront.platform.http.pagination import (
    Page,
    SeqPageParamsDep,
    encode_seq_cursor,
    set_next_link,
)
from storefront.platform.http.responses import PROBLEM_RESPONSES, no_store
from storefront.shops.service import ShopService

router = APIRouter(tags=["audit"])


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    object_type: str
    object_id: str | None
    shop_id: uuid.UUID | None
    client_address: str | None
    request_id: str | None
    trace_id: str | None
    details: dict[str, str | int | bool | None]
    prev_hash: str
    hash: str


async def _page(
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
    shop_id: uuid.UUID | None,
) -> Page[AuditEventOut]:
    rows: list[AuditEvent] = await newest_first(
        session, shop_id=shop_id, before=page.after, limit=page.limit + 1
    )
    next_cursor = encode_seq_cursor(rows[page.limit - 1].seq) if len(rows) > page.limit else None
    no_store(response)
    set_next_link(request, response, next_cursor)
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(row) for row in rows[: page.limit]],
        next_cursor=next_cursor,
    )


@router.get(
    "/shops/{shop_id}/audit-events",
    response_model=Page[AuditEventOut],
    responses=PROBLEM_RESPONSES,
    summary="This shop's audit entries, newest first (the shop's owners)",
)
async def shop_audit_events(
    shop_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
) -> Page[AuditEventOut]:
    await ShopService(session).require_owner(shop_id, principal)
    return await _page(session, request, response, page, shop_id)


@router.get(
    "/admin/audit-events",
    response_model=Page[AuditEventOut],
    responses=PROBLEM_RESPONSES,
    summary="Every audit entry, newest first (platform admins)",
)
async def admin_audit_events(
    principal: CurrentPrincipal,
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
) -> Page[AuditEventOut]:
    if not principal.is_admin:
        raise Forbidden("Only platform administrators may read the whole audit log.")
    return await _page(session, request, response, page, None)
