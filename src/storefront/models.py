"""Every table's model, imported in one place for Alembic and the seed (not for domains)."""

from storefront.catalog.models import Product
from storefront.identity.models import AuthSession, RecoveryCode, RefreshToken, TotpFactor, User
from storefront.orders.models import Order, OrderLine
from storefront.platform.db import Base
from storefront.platform.idempotency import IdempotencyRecord
from storefront.platform.security.keys import SigningKeyRow
from storefront.shops.models import Membership, Shop

metadata = Base.metadata

__all__ = [
    "AuthSession",
    "IdempotencyRecord",
    "Membership",
    "Order",
    "OrderLine",
    "Product",
    "RecoveryCode",
    "RefreshToken",
    "Shop",
    "SigningKeyRow",
    "TotpFactor",
    "User",
    "metadata",
]
