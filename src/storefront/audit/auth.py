"""Who may read the audit log, as route dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from storefront.auth.principal import Principal
from storefront.identity.deps import CurrentPrincipal
from storefront.kit.errors import Forbidden
from storefront.shops.auth import ShopOwner


async def platform_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Only platform administrators may read the whole audit log.")
    return principal


ShopAuditReader = ShopOwner
"""The shop's owners: its entries, minimised (decision 0116)."""
AuditAdmin = Annotated[Principal, Depends(platform_admin)]
"""A platform administrator: every entry, every column."""
