"""Shops in the GraphQL schema: ``shop(id)``, ``viewer`` (the caller and their shops) and the
shop-by-id loader other domains' types resolve through."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from storefront.kit.errors import NotFound
from storefront.shops.models import Shop as ShopRow
from storefront.shops.service import ShopService
from storefront.web.graphql import (
    Connection,
    GraphQLContext,
    LoaderKey,
    connection,
    page_request,
)

SHOP = LoaderKey[uuid.UUID, ShopRow | None]("shop")


def shops_by_id(context: GraphQLContext) -> Callable[[list[uuid.UUID]], Awaitable[Sequence[Any]]]:
    async def load(ids: list[uuid.UUID]) -> list[ShopRow | None]:
        async with context.reading() as session:
            found = await ShopService(session).get_many(ids)
        return [found.get(shop_id) for shop_id in ids]

    return load


def shop_types_by_id(
    context: GraphQLContext,
) -> Callable[[list[uuid.UUID]], Awaitable[Sequence[Any]]]:
    """The same batch, as this domain's GraphQL type (for other domains' fields)."""
    rows = shops_by_id(context)

    async def load(ids: list[uuid.UUID]) -> list[Shop | None]:
        return [None if row is None else Shop.of(row) for row in await rows(ids)]

    return load


@strawberry.enum(description="A member's role in a shop.")
class Role(Enum):
    OWNER = "owner"
    STAFF = "staff"


@strawberry.type(description="A shop (the tenant): its catalog and orders belong to it.")
class Shop:
    id: strawberry.ID
    name: str
    slug: str
    created_at: datetime

    @classmethod
    def of(cls, row: ShopRow) -> Shop:
        return cls(
            id=strawberry.ID(str(row.id)), name=row.name, slug=row.slug, created_at=row.created_at
        )


@strawberry.type(description="One of the caller's shops and their role in it.")
class Membership:
    shop: Shop
    role: Role


@strawberry.type(description="The signed-in caller.")
class Viewer:
    id: strawberry.ID
    is_admin: bool = strawberry.field(description="A platform administrator (acts as owner).")

    @strawberry.field(description="The shops the caller is an owner or staff member of.")
    async def memberships(
        self,
        info: strawberry.Info[GraphQLContext, None],
        first: Annotated[int | None, strawberry.argument(description="1..100, default 20")] = None,
        after: str | None = None,
    ) -> Connection[Membership]:
        context = info.context
        principal = context.require_principal()
        page = page_request(first, after)
        async with context.reading() as session:
            rows, last = await ShopService(session).memberships_page(
                principal, limit=page.limit, after=page.after
            )
        return connection(
            [Membership(shop=Shop.of(shop), role=Role(role.value)) for shop, role in rows],
            [shop.id for shop, _ in rows],
            has_next_page=last is not None,
        )


@strawberry.type
class ShopQuery:
    @strawberry.field(description="The caller (an error with code unauthenticated if anonymous).")
    def viewer(self, info: strawberry.Info[GraphQLContext, None]) -> Viewer:
        principal = info.context.require_principal()
        return Viewer(id=strawberry.ID(str(principal.user_id)), is_admin=principal.is_admin)

    @strawberry.field(
        description="A shop by id (public, as GET /shops/{id}); none: null and an error with "
        "code not-found."
    )
    async def shop(self, info: strawberry.Info[GraphQLContext, None], id: uuid.UUID) -> Shop | None:
        row = await info.context.loader(SHOP).load(id)
        if row is None:
            raise NotFound("No such shop.")
        return Shop.of(row)
