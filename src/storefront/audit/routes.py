"""GET /shops/{shop_id}/audit-events (owners) and GET /admin/audit-events (platform admins).

Newest first, cursor-paginated by sequence number; never cached anywhere (``no-store``).

The two views differ on purpose (decision record 0116). A shop's owners see what happened
in their shop and which of its members did it, never anyone's client address, request or
trace id, nor the id of an actor outside the shop's staff (a customer, a former member, a
platform administrator): those read ``actor_role: "other_user"`` with no id. Platform
administrators see every column, for security investigations (GDPR 6(1)(f)).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from storefront.audit.auth import AuditAdmin, ShopAuditReader
from storefront.auditlog.log import newest_first
from storefront.auditlog.models import AuditEvent
from storefront.shops.models import Membership
from storefront.web.deps import SessionDep
from storefront.web.pagination import (
    Page,
    SeqPageParamsDep,
    encode_seq_cursor,
    set_next_link,
)
from storefront.web.responses import PROBLEM_RESPONSES, no_store

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
    chain_version: int
    personal_commitment: str | None


ActorRole = Literal["you", "owner", "staff", "other_user", "anonymous", "system"]


class ShopAuditEventOut(BaseModel):
    """An entry as a shop's owners see it: minimised (module docstring)."""

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_role: ActorRole
    actor_id: uuid.UUID | None  # only the caller's own id or a current member's
    action: str
    object_type: str
    object_id: str | None
    shop_id: uuid.UUID | None
    details: dict[str, str | int | bool | None]
    prev_hash: str
    hash: str


async def _rows(
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
    shop_id: uuid.UUID | None,
) -> tuple[list[AuditEvent], str | None]:
    rows: list[AuditEvent] = await newest_first(
        session, shop_id=shop_id, before=page.after, limit=page.limit + 1
    )
    next_cursor = encode_seq_cursor(rows[page.limit - 1].seq) if len(rows) > page.limit else None
    no_store(response)
    set_next_link(request, response, next_cursor)
    return rows[: page.limit], next_cursor


async def _member_roles(
    session: SessionDep, shop_id: uuid.UUID, user_ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not user_ids:
        return {}
    result = await session.execute(
        select(Membership.user_id, Membership.role).where(
            Membership.shop_id == shop_id, Membership.user_id.in_(user_ids)
        )
    )
    return {user_id: role.value for user_id, role in result}


def _for_shop(row: AuditEvent, caller: uuid.UUID, roles: dict[uuid.UUID, str]) -> ShopAuditEventOut:
    role: ActorRole
    actor_id = None
    if row.actor_type != "user" or row.actor_id is None:
        role = "system" if row.actor_type == "system" else "anonymous"
    elif row.actor_id == caller:
        role, actor_id = "you", row.actor_id
    elif roles.get(row.actor_id) in {"owner", "staff"}:
        role = "owner" if roles[row.actor_id] == "owner" else "staff"
        actor_id = row.actor_id
    else:
        role = "other_user"
    return ShopAuditEventOut(
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor_type=row.actor_type,
        actor_role=role,
        actor_id=actor_id,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        shop_id=row.shop_id,
        details=dict(row.details or {}),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@router.get(
    "/shops/{shop_id}/audit-events",
    response_model=Page[ShopAuditEventOut],
    responses=PROBLEM_RESPONSES,
    summary="This shop's audit entries, newest first, minimised (the shop's owners)",
)
async def shop_audit_events(
    owner: ShopAuditReader,
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
) -> Page[ShopAuditEventOut]:
    shop_id, caller = owner.shop_id, owner.principal.user_id
    rows, next_cursor = await _rows(session, request, response, page, shop_id)
    actors = {row.actor_id for row in rows if row.actor_id is not None}
    roles = await _member_roles(session, shop_id, actors - {caller})
    return Page[ShopAuditEventOut](
        items=[_for_shop(row, caller, roles) for row in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/admin/audit-events",
    response_model=Page[AuditEventOut],
    responses=PROBLEM_RESPONSES,
    summary="Every audit entry, newest first (platform admins)",
)
async def admin_audit_events(
    _admin: AuditAdmin,
    session: SessionDep,
    request: Request,
    response: Response,
    page: SeqPageParamsDep,
) -> Page[AuditEventOut]:
    rows, next_cursor = await _rows(session, request, response, page, None)
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )
