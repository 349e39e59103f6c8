"""Every table's model, imported in one place for Alembic and the seed (not for domains)."""

from storefront.catalog.models import Product
from storefront.identity.models import AuthSession, RecoveryCode, RefreshToken, TotpFactor, User
from storefront.orders.models import Order, OrderLine
from storefront.platform.audit import AuditEvent
from storefront.platform.crypto import DataKeyRow
from storefront.platform.db import Base
from storefront.platform.idempotency import IdempotencyRecord
from storefront.platform.outbox import OutboxEntry
from storefront.platform.security.keys import SigningKeyRow
from storefront.privacy.models import ConsentRecord, DataExport
from storefront.shops.models import Membership, Shop
from storefront.webhooks.models import WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "AuditEvent",
    "AuthSession",
    "ConsentRecord",
    "DataExport",
    "DataKeyRow",
    "IdempotencyRecord",
    "Membership",
    "Order",
    "OrderLine",
    "OutboxEntry",
    "Product",
    "RecoveryCode",
    "RefreshToken",
    "Shop",
    "SigningKeyRow",
    "TotpFactor",
    "User",
    "WebhookEndpoint",
    "metadata",
]
