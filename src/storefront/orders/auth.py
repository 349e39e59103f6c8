"""Who may read and act on a shop's orders, as route dependencies (the path's ``{shop_id}``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from storefront.identity.deps import CurrentPrincipal
from storefront.orders.service import OrderService, OrderViewer
from storefront.shops.auth import ShopStaff
from storefront.web.deps import ResourcesDep, SessionDep


async def order_reader(
    shop_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, resources: ResourcesDep
) -> OrderViewer:
    service = OrderService(session, shop_id, cache=resources.cache, vault=resources.vault)
    return await service.viewer(principal)


OrderReader = Annotated[OrderViewer, Depends(order_reader)]
"""Anyone signed in, narrowed to what they may see: the shop's staff every order, a customer
their own (someone else's order is 404). An unknown shop is 404."""
HoldLimitsEditor = ShopStaff
"""The shop's owners and staff: change what one customer may hold unpaid."""
