"""A shop's audit log in the GraphQL schema: ``shopAuditEvents(shopId)``, the entries GET
/shops/{id}/audit-events answers, minimised the same way (decision 0116) for the same
readers (the shop's owners), newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from storefront.audit.routes import ShopAuditEventOut, _for_shop, _member_roles
from storefront.auditlog.log import newest_first
from storefront.kit.errors import UnprocessableEntity
from storefront.shops.service import ShopService
from storefront.web.graphql import Edge, GraphQLContext, PageInfo
from storefront.web.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_seq_cursor,
    encode_seq_cursor,
)


@strawberry.type(
    description="An entry of a shop's audit log as its owners see it: no client address, "
    "request or trace id, and no id for an actor outside the shop's staff."
)
class ShopAuditEvent:
    seq: int = strawberry.field(description="Its place in the log (newest: highest).")
    occurred_at: datetime = strawberry.field(description="When it happened.")
    actor_type: str = strawberry.field(description="user or system.")
    actor_role: str = strawberry.field(
        description="you, owner, staff, other_user, anonymous or system."
    )
    actor_id: strawberry.ID | None = strawberry.field(
        description="Only the caller's own id or a current member's."
    )
    action: str = strawberry.field(description="What was done (e.g. product.created).")
    object_type: str = strawberry.field(description="The kind of thing it was done to.")
    object_id: str | None = strawberry.field(description="Its id, if any.")
    shop_id: strawberry.ID | None = strawberry.field(description="The shop.")
    details: JSON = strawberry.field(description="The action's details (an object).")
    prev_hash: str = strawberry.field(description="The previous entry's hash (the chain).")
    hash: str = strawberry.field(description="This entry's hash.")

    @classmethod
    def of(cls, out: ShopAuditEventOut) -> ShopAuditEvent:
        return cls(
            seq=out.seq,
            occurred_at=out.occurred_at,
            actor_type=out.actor_type,
            actor_role=out.actor_role,
            actor_id=None if out.actor_id is None else strawberry.ID(str(out.actor_id)),
            action=out.action,
            object_type=out.object_type,
            object_id=out.object_id,
            shop_id=None if out.shop_id is None else strawberry.ID(str(out.shop_id)),
            details=cast(JSON, out.details),
            prev_hash=out.prev_hash,
            hash=out.hash,
        )


@strawberry.type(description="A page of a shop's audit entries, newest first.")
class ShopAuditEventConnection:
    edges: list[Edge[ShopAuditEvent]] = strawberry.field(
        description="The entries of the page with their cursors."
    )
    page_info: PageInfo = strawberry.field(description="Where this page stands.")

    @strawberry.field(description="The entries of the page, without their cursors.")
    def nodes(self) -> list[ShopAuditEvent]:
        return [edge.node for edge in self.edges]


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="The shop's audit entries, newest first, minimised (the shop's owners, "
        "as GET /shops/{id}/audit-events)."
    )
    async def shop_audit_events(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        first: Annotated[int | None, strawberry.argument(description="1..100, default 20")] = None,
        after: str | None = None,
    ) -> ShopAuditEventConnection:
        context = info.context
        principal = context.require_principal()
        limit = DEFAULT_PAGE_SIZE if first is None else first
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise UnprocessableEntity(f"first must be between 1 and {MAX_PAGE_SIZE}.")
        before = decode_seq_cursor(after)
        async with context.reading() as session:
            await ShopService(session).require_owner(shop_id, principal)
            rows = await newest_first(session, shop_id=shop_id, before=before, limit=limit + 1)
            page = rows[:limit]
            caller = principal.user_id
            actors = {row.actor_id for row in page if row.actor_id is not None}
            # REST's helper (typed for its request session): the same roles query
            roles = await _member_roles(cast(Any, session), shop_id, actors - {caller})
            events = [ShopAuditEvent.of(_for_shop(row, caller, roles)) for row in page]
        edges = [Edge(cursor=encode_seq_cursor(e.seq), node=e) for e in events]
        return ShopAuditEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > limit,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )
