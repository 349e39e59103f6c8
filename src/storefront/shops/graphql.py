"""Shops in the GraphQL schema: ``shop(id)``, the caller's part of ``Viewer`` (who they are,
their shops; ``storefront.graphql`` adds their orders and serves ``viewer``) and the
shop-by-id loader other domains' types resolve through."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from storefront.identity.service import contact_of
from storefront.kit.errors import NotFound, Unauthenticated
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
# a user's (email, display name), opened from the identity service as GET /users/me does
PROFILE = LoaderKey[uuid.UUID, tuple[str, str] | None]("profile")


def profiles_by_id(
    context: GraphQLContext,
) -> Callable[[list[uuid.UUID]], Awaitable[Sequence[Any]]]:
    """The batch behind PROFILE (only ever the caller: one user, one read)."""

    async def load(ids: list[uuid.UUID]) -> list[tuple[str, str] | None]:
        async with context.reading() as session:
            return [
                await contact_of(session, user_id, vault=context.resources.vault) for user_id in ids
            ]

    return load


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


async def _profile(info: strawberry.Info[GraphQLContext, None], user_id: str) -> tuple[str, str]:
    profile = await info.context.loader(PROFILE).load(uuid.UUID(user_id))
    if profile is None:  # erased or deactivated since the token was issued: as GET /users/me
        raise Unauthenticated("This account is no longer active.")
    return profile


@strawberry.type(description="The signed-in caller.")
class Viewer:
    id: strawberry.ID
    is_admin: bool = strawberry.field(description="A platform administrator (acts as owner).")

    @strawberry.field(description="The caller's email address (as GET /users/me).")
    async def email(self, info: strawberry.Info[GraphQLContext, None]) -> str:
        return (await _profile(info, self.id))[0]

    @strawberry.field(description="The caller's display name (as GET /users/me).")
    async def display_name(self, info: strawberry.Info[GraphQLContext, None]) -> str:
        return (await _profile(info, self.id))[1]

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
    @strawberry.field(
        description="A shop by id (public, as GET /shops/{id}); none: null and an error with "
        "code not-found."
    )
    async def shop(self, info: strawberry.Info[GraphQLContext, None], id: uuid.UUID) -> Shop | None:
        row = await info.context.loader(SHOP).load(id)
        if row is None:
            raise NotFound("No such shop.")
        return Shop.of(row)
