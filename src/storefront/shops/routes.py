from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from storefront.cache import Entry, make_entry
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.inputs import STORABLE
from storefront.shops.auth import ShopOwner
from storefront.shops.schemas import (
    MemberIn,
    MemberOut,
    MyShopOut,
    ShopIn,
    ShopOut,
    ShopSummaryOut,
)
from storefront.shops.service import ShopService, shop_tag
from storefront.web.cached import MAX_CONDITION_LENGTH, cached_response
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.pagination import (
    Page,
    PageParamsDep,
    encode_cursor,
    set_next_link,
)
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PROBLEM_RESPONSES, no_store

router = APIRouter(tags=["shops"])


@router.post(
    "/shops",
    status_code=status.HTTP_201_CREATED,
    response_model=ShopOut,
    responses=PROBLEM_RESPONSES,
)
async def create_shop(
    body: ShopIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> ShopOut:
    settings = resources.settings
    shop = await ShopService(session).create(
        principal,
        name=body.name,
        slug=body.slug,
        max_owned=settings.max_owned_shops_per_user if settings is not None else None,
    )
    response.headers["Location"] = f"{API_PREFIX}/shops/{shop.id}"
    return ShopOut.model_validate(shop)


@router.get(
    "/shops/{shop_id}",
    response_model=ShopOut,
    responses={**PROBLEM_RESPONSES, 304: {"description": "Not modified"}},
)
async def get_shop(
    shop_id: uuid.UUID,
    resources: ResourcesDep,
    if_none_match: Annotated[str | None, Header(max_length=MAX_CONDITION_LENGTH), STORABLE] = None,
) -> Response:
    async def compute() -> Entry:
        async with resources.sessionmaker() as session:
            shop = await ShopService(session).get(shop_id)
            return make_entry(ShopOut.model_validate(shop).model_dump_json().encode())

    entry, source = await resources.cache.get_or_compute(
        "shop", f"shop:{shop_id}", [shop_tag(shop_id)], compute
    )
    return cached_response(entry, source, if_none_match)


@router.put(
    "/shops/{shop_id}/members/{user_id}", response_model=MemberOut, responses=PROBLEM_RESPONSES
)
async def put_member(
    user_id: uuid.UUID,
    body: MemberIn,
    owner: ShopOwner,
    session: SessionDep,
) -> MemberOut:
    membership = await ShopService(session).set_member(
        owner.principal, owner.shop_id, user_id, body.role
    )
    return MemberOut.model_validate(membership)


@router.delete(
    "/shops/{shop_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def delete_member(user_id: uuid.UUID, owner: ShopOwner, session: SessionDep) -> None:
    await ShopService(session).remove_member(owner.principal, owner.shop_id, user_id)


@router.get(
    "/users/me/shops",
    response_model=Page[MyShopOut],
    responses=PROBLEM_RESPONSES,
    summary="The shops the caller belongs to, with the caller's role in each",
    description="The caller's memberships (`owner` or `staff`), in shop creation order, "
    "cursor-paginated like every listing: pass `next_cursor` as `cursor`, or follow the "
    '`Link: <...>; rel="next"` header; the last page has `next_cursor: null` and no `Link`. '
    "A user without memberships gets an empty page. Platform admins see only the shops they "
    "are members of. Never cached (`Cache-Control: no-store`).",
)
async def my_shops(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    session: SessionDep,
    page: PageParamsDep,
) -> Page[MyShopOut]:
    rows, last = await ShopService(session).memberships_page(
        principal, limit=page.limit, after=page.after
    )
    next_cursor = encode_cursor(last) if last else None
    no_store(response)
    set_next_link(request, response, next_cursor)
    return Page[MyShopOut](
        items=[
            MyShopOut(shop=ShopSummaryOut.model_validate(shop), role=role) for shop, role in rows
        ],
        next_cursor=next_cursor,
    )
