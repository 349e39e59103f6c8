from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from storefront.identity.deps import CurrentPrincipal
from storefront.platform.cache import Entry, make_entry
from storefront.platform.http.cached import cached_response
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.responses import PROBLEM_RESPONSES
from storefront.shops.schemas import MemberIn, MemberOut, ShopIn, ShopOut
from storefront.shops.service import ShopService, shop_tag

router = APIRouter(tags=["shops"])


@router.post(
    "/shops",
    status_code=status.HTTP_201_CREATED,
    response_model=ShopOut,
    responses=PROBLEM_RESPONSES,
)
async def create_shop(
    body: ShopIn, principal: CurrentPrincipal, session: SessionDep, response: Response
) -> ShopOut:
    shop = await ShopService(session).create(principal, name=body.name, slug=body.slug)
    response.headers["Location"] = f"/api/v1/shops/{shop.id}"
    return ShopOut.model_validate(shop)


@router.get(
    "/shops/{shop_id}",
    response_model=ShopOut,
    responses={**PROBLEM_RESPONSES, 304: {"description": "Not modified"}},
)
async def get_shop(
    shop_id: uuid.UUID,
    runtime: RuntimeDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    async def compute() -> Entry:
        async with runtime.sessionmaker() as session:
            shop = await ShopService(session).get(shop_id)
            return make_entry(ShopOut.model_validate(shop).model_dump_json().encode())

    entry, source = await runtime.cache.get_or_compute(
        "shop", f"shop:{shop_id}", [shop_tag(shop_id)], compute
    )
    return cached_response(entry, source, if_none_match)


@router.put(
    "/shops/{shop_id}/members/{user_id}", response_model=MemberOut, responses=PROBLEM_RESPONSES
)
async def put_member(
    shop_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberIn,
    principal: CurrentPrincipal,
    session: SessionDep,
) -> MemberOut:
    membership = await ShopService(session).set_member(principal, shop_id, user_id, body.role)
    return MemberOut.model_validate(membership)


@router.delete(
    "/shops/{shop_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def delete_member(
    shop_id: uuid.UUID, user_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> None:
    await ShopService(session).remove_member(principal, shop_id, user_id)
