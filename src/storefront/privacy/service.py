"""Consents, data exports and erasure: the rules behind /users/me/consents, /exports and
DELETE /users/me (docs/privacy.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storefront import auditlog as audit
from storefront.auth.principal import Principal
from storefront.identity.personal_data import erase_account
from storefront.identity.service import require_recent_auth
from storefront.identity.sessions import ClientInfo
from storefront.kit.db import utcnow
from storefront.kit.errors import Conflict, Gone, NotFound
from storefront.privacy.archive import archive_aad
from storefront.privacy.consents import ERASURE_SOURCE, ConsentService
from storefront.privacy.models import DataExport, ExportStatus
from storefront.privacy.repository import ExportRepository
from storefront.privacy.tasks import build_export, export_ttl
from storefront.resources import Resources
from storefront.settings import Settings
from storefront.shops.service import ShopService

# --- exports --------------------------------------------------------------------------------


def effective_status(export: DataExport, now: datetime) -> ExportStatus:
    """Expired as soon as its time is up, even before the retention job removes the archive."""
    if export.status is ExportStatus.ready and export.expires_at <= now:
        return ExportStatus.expired
    return export.status


class ExportService:
    def __init__(self, session: AsyncSession, resources: Resources, settings: Settings) -> None:
        self.session = session
        self.resources = resources
        self.settings = settings
        self.exports = ExportRepository(session)

    async def request(self, user_id: uuid.UUID) -> DataExport:
        """A queued export; the job that builds it is sent once this transaction commits.

        At most ``max_live_exports`` unexpired ones per user, counted under a per-user lock
        so requests sent together cannot all pass (decision 0123)."""
        await self.exports.lock_user(user_id)
        now = utcnow()
        limit = self.settings.privacy.max_live_exports
        if await self.exports.count_live(user_id, now) >= limit:
            raise Conflict(
                f"You already have {limit} exports that are not over (queued, running or "
                "ready to download): download one of them, or request a new one once one "
                "has expired."
            )
        export = await self.exports.add(
            DataExport(
                user_id=user_id,
                status=ExportStatus.queued,
                requested_at=now,
                # a job that never runs still leaves a row that expires
                expires_at=now + export_ttl(self.settings),
            )
        )
        if self.resources.jobs is not None:
            self.resources.jobs.defer(self.session, build_export, export_id=str(export.id))
        audit.record(
            self.session,
            "user.export_requested",
            object_type="data_export",
            object_id=export.id,
            actor_id=user_id,
        )
        return export

    async def get(self, user_id: uuid.UUID, export_id: uuid.UUID) -> DataExport:
        export = await self.exports.get_for(user_id, export_id)
        if export is None:
            raise NotFound("No such export.")
        return export

    async def download(self, user_id: uuid.UUID, export_id: uuid.UUID) -> bytes:
        export = await self.get(user_id, export_id)
        status = effective_status(export, utcnow())
        if status is ExportStatus.expired:
            raise Gone("This export has expired; request a new one.")
        if status is not ExportStatus.ready or export.archive_sealed is None:
            raise Conflict(
                "This export is not ready."
                if status in {ExportStatus.queued, ExportStatus.running}
                else "This export failed; request a new one."
            )
        archive = await self.resources.vault.open_for(
            self.session, user_id, export.archive_sealed, aad=archive_aad(export.id)
        )
        if archive is None:  # pragma: no cover - an erased user cannot sign in
            raise Gone("This export is no longer readable.")
        audit.record(
            self.session,
            "user.export_downloaded",
            object_type="data_export",
            object_id=export.id,
            actor_id=user_id,
        )
        return archive.encode()


# --- erasure --------------------------------------------------------------------------------


class ErasureService:
    """DELETE /users/me: everything in one transaction (docs/privacy.md, "Erasure")."""

    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources

    async def erase(self, principal: Principal, client: ClientInfo) -> None:
        require_recent_auth(self.resources, principal.auth_time)
        user_id = principal.user_id
        # identity: sessions revoked (access tokens blocked), sign-in impossible, the email's
        # blind index cleared, session addresses and user agents dropped, MFA deleted, the
        # sign-in throttling counters about the account purged
        await erase_account(self.session, self.resources, user_id, client)
        # shops: no longer a member anywhere (a shop left without owners is handed over by a
        # platform administrator; decision 0124)
        await ShopService(self.session).end_memberships_of(user_id, reason="erased")
        # idempotency records keep whole responses (an order's address): gone
        await self.resources.idempotency.delete_owned_by(self.session, str(user_id))
        # pending and finished exports: their archives are the user's data
        await ExportRepository(self.session).delete_for_user(user_id)
        # consent history is kept as proof (GDPR 7(1)) under the now anonymous id; every
        # consent still granted is withdrawn
        consents = ConsentService(self.session)
        current = ConsentService.current(await consents.history(user_id))
        withdrawn = {s.purpose: False for s in current if s.granted}
        if withdrawn:
            await consents.update(user_id, withdrawn, source=ERASURE_SOURCE)
        # crypto-shredding: email, display name, order addresses and phones, export archives
        # (in this database and in every backup) become unreadable
        await self.resources.vault.destroy(self.session, user_id)
        # the audit log keeps what happened under the opaque id; the client addresses of the
        # user's entries (and of those this transaction records) are nulled, the chain
        # still verifies through their commitments (decision record 0115)
        await audit.erase_personal_fields(self.session, user_id)
        audit.record(
            self.session,
            "user.erased",
            object_type="user",
            object_id=user_id,
            actor_id=user_id,
        )
