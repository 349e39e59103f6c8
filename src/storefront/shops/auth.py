"""Who may act on a shop, as route dependencies (the path's ``{shop_id}``).

Each alias resolves to a :class:`ShopActor` once the check has passed: an unknown shop is
404, a caller without the role 403 (a shop's existence is public: ``GET /shops/{id}``).
Platform administrators act as owners everywhere. Other domains build their own aliases on
these, so every route that acts in a shop states its role the same way. A route takes the
shop's id from the actor rather than declaring ``shop_id`` again (a malformed id would be
reported twice).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from storefront.auth.principal import Principal
from storefront.identity.deps import CurrentPrincipal
from storefront.shops.service import ShopService
from storefront.web.deps import SessionDep


@dataclass(frozen=True, slots=True)
class ShopActor:
    """The caller, allowed to act in the shop of the request's path."""

    shop_id: uuid.UUID
    principal: Principal


async def shop_owner(
    shop_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> ShopActor:
    await ShopService(session).require_owner(shop_id, principal)
    return ShopActor(shop_id, principal)


async def shop_staff(
    shop_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> ShopActor:
    await ShopService(session).require_staff(shop_id, principal)
    return ShopActor(shop_id, principal)


ShopOwner = Annotated[ShopActor, Depends(shop_owner)]
"""An owner of the shop (or a platform administrator)."""
ShopStaff = Annotated[ShopActor, Depends(shop_staff)]
"""An owner or a staff member of the shop (or a platform administrator)."""
