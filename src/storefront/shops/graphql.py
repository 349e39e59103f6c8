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
from storefront.shops.models import Membership as MembershipRow
from storefront.shops.models import Role as RoleValue
from storefront.shops.models import Shop as ShopRow
from storefront.shops.schemas import MemberIn, ShopIn
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
    id: strawberry.ID = strawberry.field(description="The shop's id.")
    name: str = strawberry.field(description="The shop's name, as shown to customers.")
    slug: str = strawberry.field(description="The shop's unique short name (a-z, 0-9, hyphens).")
    created_at: datetime = strawberry.field(description="When the shop was opened.")

    @classmethod
    def of(cls, row: ShopRow) -> Shop:
        return cls(
            id=strawberry.ID(str(row.id)), name=row.name, slug=row.slug, created_at=row.created_at
        )


@strawberry.type(description="One of the caller's shops and their role in it.")
class Membership:
    shop: Shop = strawberry.field(description="The shop.")
    role: Role = strawberry.field(description="The caller's role in it.")


async def _profile(info: strawberry.Info[GraphQLContext, None], user_id: str) -> tuple[str, str]:
    profile = await info.context.loader(PROFILE).load(uuid.UUID(user_id))
    if profile is None:  # erased or deactivated since the token was issued: as GET /users/me
        raise Unauthenticated("This account is no longer active.")
    return profile


@strawberry.type(description="The signed-in caller.")
class Viewer:
    id: strawberry.ID = strawberry.field(description="The caller's user id.")
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


@strawberry.type(description="A member of a shop, as set by one of its owners.")
class ShopMember:
    shop_id: strawberry.ID = strawberry.field(description="The shop.")
    user_id: strawberry.ID = strawberry.field(description="The member's user id.")
    role: Role = strawberry.field(description="Their role in the shop.")
    created_at: datetime = strawberry.field(description="When they joined the shop.")

    @classmethod
    def of(cls, row: MembershipRow) -> ShopMember:
        return cls(
            shop_id=strawberry.ID(str(row.shop_id)),
            user_id=strawberry.ID(str(row.user_id)),
            role=Role(row.role.value),
            created_at=row.created_at,
        )


@strawberry.type
class ShopMutation:
    @strawberry.mutation(
        description="Open a shop owned by the caller (as POST /shops: the slug is unique, "
        "a conflict otherwise; at most the platform's number of owned shops per user)."
    )
    async def create_shop(
        self,
        info: strawberry.Info[GraphQLContext, None],
        name: Annotated[str, strawberry.argument(description="1..120 characters, one line.")],
        slug: Annotated[
            str, strawberry.argument(description="3..63 of a-z, 0-9 and inner hyphens.")
        ],
    ) -> Shop:
        context = info.context
        principal = context.require_principal()
        body = ShopIn.model_validate({"name": name, "slug": slug})
        settings = context.resources.settings
        async with context.writing() as session:
            shop = await ShopService(session).create(
                principal,
                name=body.name,
                slug=body.slug,
                max_owned=settings.max_owned_shops_per_user,
            )
            return Shop.of(shop)

    @strawberry.mutation(
        description="Make a user an owner or staff member of the shop, or change their role "
        "(the shop's owners; as PUT /shops/{id}/members/{user_id})."
    )
    async def set_shop_member(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        user_id: uuid.UUID,
        role: Role,
    ) -> ShopMember:
        context = info.context
        principal = context.require_principal()
        body = MemberIn(role=RoleValue(role.value))
        async with context.writing() as session:
            shops = ShopService(session)
            await shops.require_owner(shop_id, principal)
            membership = await shops.set_member(principal, shop_id, user_id, body.role)
            return ShopMember.of(membership)

    @strawberry.mutation(
        description="Remove a member from the shop (the shop's owners; as DELETE "
        "/shops/{id}/members/{user_id}): true once removed."
    )
    async def remove_shop_member(
        self,
        info: strawberry.Info[GraphQLContext, None],
        shop_id: uuid.UUID,
        user_id: uuid.UUID,
    ) -> bool:
        context = info.context
        principal = context.require_principal()
        async with context.writing() as session:
            shops = ShopService(session)
            await shops.require_owner(shop_id, principal)
            await shops.remove_member(principal, shop_id, user_id)
        return True
