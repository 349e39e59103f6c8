"""Consent records: an append-only history per user and purpose."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storefront import auditlog as audit
from storefront.kit.db import utcnow
from storefront.privacy.models import ConsentRecord
from storefront.privacy.processing import CONSENT_PURPOSES
from storefront.privacy.repository import ConsentRepository

API_SOURCE = "api"
ERASURE_SOURCE = "erasure"


@dataclass(frozen=True, slots=True)
class ConsentState:
    purpose: str
    granted: bool
    updated_at: datetime | None


class ConsentService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.records = ConsentRepository(session)

    async def history(self, user_id: uuid.UUID) -> list[ConsentRecord]:
        return list(await self.records.history(user_id))

    async def latest(self, user_id: uuid.UUID) -> list[ConsentState]:
        """The current state, from the latest decision per purpose (not the whole history)."""
        return self.current(await self.records.latest(user_id, list(CONSENT_PURPOSES)))

    @staticmethod
    def current(history: list[ConsentRecord]) -> list[ConsentState]:
        """The latest decision per purpose; a purpose never decided on is not granted."""
        latest: dict[str, ConsentRecord] = {}
        for record in history:  # oldest first: the last one wins
            latest[record.purpose] = record
        return [
            ConsentState(
                purpose,
                latest[purpose].granted if purpose in latest else False,
                latest[purpose].recorded_at if purpose in latest else None,
            )
            for purpose in CONSENT_PURPOSES
        ]

    async def update(
        self, user_id: uuid.UUID, changes: Mapping[str, bool], *, source: str = API_SOURCE
    ) -> list[ConsentRecord]:
        """Append a record for each purpose whose state changes (the schema has already
        refused unknown purposes); unchanged ones leave no trace."""
        state = {s.purpose: s.granted for s in await self.latest(user_id)}
        now = utcnow()
        added = [
            ConsentRecord(
                user_id=user_id, purpose=purpose, granted=granted, recorded_at=now, source=source
            )
            for purpose, granted in changes.items()
            if state[purpose] != granted
        ]
        if added:
            self.records.add_all(added)
            await self.session.flush()
            audit.record(
                self.session,
                "user.consents_changed",
                object_type="user",
                object_id=user_id,
                actor_id=user_id if source == API_SOURCE else None,
                details={
                    "granted": ",".join(r.purpose for r in added if r.granted) or None,
                    "withdrawn": ",".join(r.purpose for r in added if not r.granted) or None,
                    "source": source,
                },
            )
        return added
