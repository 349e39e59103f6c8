"""The privacy domain's background jobs: building an export archive."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from storefront.jobs.queue import job
from storefront.kit.db import utcnow
from storefront.privacy.archive import archive_aad, build_archive
from storefront.privacy.models import ExportStatus
from storefront.privacy.repository import ExportRepository

if TYPE_CHECKING:
    from storefront.resources import Resources
    from storefront.settings import Settings

logger = logging.getLogger("storefront.privacy.tasks")
PENDING = (ExportStatus.queued, ExportStatus.running)


def export_ttl(settings: Settings) -> timedelta:
    """How long a finished export (or a request whose job never ran) stays."""
    return timedelta(hours=settings.privacy.export_ttl_hours)


@job("privacy.build_export")
async def build_export(resources: Resources, *, export_id: str) -> None:
    """Build, seal and store the archive of one export request. A second delivery of the
    same message rebuilds it (same result); a finished, failed or deleted request is left
    alone. A failure marks the request failed (the user asks again) and is logged."""
    settings = resources.settings
    key = uuid.UUID(export_id)
    async with resources.sessionmaker() as session:
        export = await ExportRepository(session).get(key)
        if export is None or export.status not in PENDING:
            return
        export.status = ExportStatus.running
        await session.commit()
    try:
        async with resources.sessionmaker() as session:
            export = await ExportRepository(session).get(key)
            if export is None or export.status not in PENDING:
                return  # erased (or finished) meanwhile
            archive = await build_archive(session, resources, settings, export.user_id, key)
            now = utcnow()
            export.archive_sealed = await resources.vault.seal_for(
                session, export.user_id, archive.decode(), aad=archive_aad(key)
            )
            export.size_bytes = len(archive)
            export.status = ExportStatus.ready
            export.completed_at = now
            export.expires_at = now + export_ttl(settings)
            await session.commit()
    except Exception:
        logger.exception("export %s failed", export_id)
        async with resources.sessionmaker() as session:
            export = await ExportRepository(session).get(key)
            if export is not None and export.status in PENDING:
                now = utcnow()
                export.status = ExportStatus.failed
                export.completed_at = now
                export.expires_at = now + export_ttl(settings)
                await session.commit()
        return
    logger.info("export %s ready (%d bytes)", export_id, len(archive))


JOBS = (build_export,)  # what this domain runs in the job queue
