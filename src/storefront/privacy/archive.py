"""The export archive: everything held about one user, as one JSON document."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from storefront import auditlog as audit
from storefront.identity.personal_data import account_data
from storefront.kit.db import utcnow
from storefront.orders.personal_data import orders_of_customer
from storefront.privacy.consents import ConsentService
from storefront.privacy.processing import CONSENT_PURPOSES, record_of_processing
from storefront.privacy.repository import ExportRepository
from storefront.resources import Resources
from storefront.settings import Settings

FORMAT = "storefront-personal-data/1"


def archive_aad(export_id: uuid.UUID) -> str:
    """What a sealed archive is bound to: its own row and column."""
    return f"data_exports.archive_sealed:{export_id}"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


async def build_archive(
    session: AsyncSession,
    resources: Resources,
    settings: Settings,
    user_id: uuid.UUID,
    export_id: uuid.UUID,
) -> bytes:
    """Profile, sessions, two-factor settings, consents with their history, orders with
    lines and decrypted addresses, the audit entries about the user, earlier export requests,
    and the record of processing (purposes, recipients, retention periods)."""
    account = await account_data(session, user_id, vault=resources.vault)
    consents = ConsentService(session)
    history = await consents.history(user_id)
    exports = await ExportRepository(session).list_for(user_id)
    document: dict[str, Any] = {
        "format": FORMAT,
        "export_id": str(export_id),
        "generated_at": utcnow().isoformat(),
        "user_id": str(user_id),
        **account,
        "consents": {
            "current": [
                {"purpose": s.purpose, "granted": s.granted, "updated_at": _iso(s.updated_at)}
                for s in ConsentService.current(history)
            ],
            "history": [
                {
                    "purpose": r.purpose,
                    "granted": r.granted,
                    "recorded_at": _iso(r.recorded_at),
                    "source": r.source,
                }
                for r in history
            ],
            "purposes": CONSENT_PURPOSES,
        },
        "orders": await orders_of_customer(session, user_id, vault=resources.vault),
        "audit_entries": await audit.entries_about(session, user_id),
        "data_exports": [
            {
                "id": str(e.id),
                "requested_at": _iso(e.requested_at),
                "completed_at": _iso(e.completed_at),
                "status": e.status.value,
            }
            for e in exports
            if e.id != export_id
        ],
        "processing": record_of_processing(settings),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str)
