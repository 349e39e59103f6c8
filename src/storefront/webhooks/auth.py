"""Who may manage a shop's webhook endpoints, as route dependencies."""

from __future__ import annotations

from storefront.shops.auth import ShopOwner

WebhookManager = ShopOwner
"""The shop's owners: subscribe, list and delete endpoints (the secret is theirs)."""
