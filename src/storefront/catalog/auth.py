"""Who may change a shop's catalog, as route dependencies. Reading it is public."""

from __future__ import annotations

from storefront.shops.auth import ShopStaff

CatalogEditor = ShopStaff
"""The shop's owners and staff: create, change, archive and bulk-upsert its products."""
