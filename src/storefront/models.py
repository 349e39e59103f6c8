"""Every table's model, imported in one place for Alembic and the seed (not for domains)."""

from storefront.auditlog import AuditEvent
from storefront.auth.signing_keys import SigningKeyRow
from storefront.backfills.models import BackfillProgress
from storefront.catalog.models import Product
from storefront.events import DomainEvent, InboxEntry
from storefront.idempotency import IdempotencyRecord
from storefront.identity.models import AuthSession, RecoveryCode, RefreshToken, TotpFactor, User
from storefront.jobs.outbox import OutboxEntry
from storefront.kit.db import Base
from storefront.orders.models import Order, OrderLine
from storefront.payments.models import Payment, ProviderEvent
from storefront.privacy.models import ConsentRecord, DataExport
from storefront.sales.models import SalesDay
from storefront.shops.models import Membership, Shop
from storefront.vault import DataKeyRow
from storefront.webhooks.models import WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "AuditEvent",
    "AuthSession",
    "BackfillProgress",
    "ConsentRecord",
    "DataExport",
    "DataKeyRow",
    "DomainEvent",
    "IdempotencyRecord",
    "InboxEntry",
    "Membership",
    "Order",
    "OrderLine",
    "OutboxEntry",
    "Payment",
    "Product",
    "ProviderEvent",
    "RecoveryCode",
    "RefreshToken",
    "SalesDay",
    "Shop",
    "SigningKeyRow",
    "TotpFactor",
    "User",
    "WebhookEndpoint",
    "metadata",
]
