"""Who may read a shop's sales, as a route dependency."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from storefront.identity.deps import CurrentPrincipal
from storefront.sales.service import SalesService
from storefront.shops.auth import ShopActor
from storefront.web.deps import ReadSessionDep


async def sales_reader(
    shop_id: uuid.UUID, principal: CurrentPrincipal, session: ReadSessionDep
) -> ShopActor:
    await SalesService(session).require_reader(shop_id, principal)
    return ShopActor(shop_id, principal)


SalesReader = Annotated[ShopActor, Depends(sales_reader)]
"""An owner or staff member of the shop (or a platform administrator); anyone else: 404."""
