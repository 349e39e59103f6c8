"""Retention: delete what is kept longer than docs/privacy.md says, on a schedule and from
``storefront retention run [--dry-run]``.

A real run deletes in batches: each transaction takes at most
``STOREFRONT_PRIVACY__RETENTION_BATCH_SIZE`` rows of each category and commits, and the run
repeats until a batch finds less than that in every category, so a large backlog never
holds one long transaction (or SQLite's write lock) nor runs into ``statement_timeout``.
A dry run counts everything in one read and rolls back. Categories:

- ``export_archives``: exports past their expiry: the sealed archive is deleted, the request
  stays (status ``expired``, answered 410);
- ``export_records``: those requests, ``export_record_days`` after they expired;
- ``refresh_tokens``: every refresh token of an ended session (revoked, past its lifetime or
  idle): none can be used again;
- ``sessions``: sessions ended more than ``session_retention_days`` ago, with the client
  address and user agent they hold;
- ``idempotency_records``: stored responses past ``STOREFRONT_IDEMPOTENCY__TTL_HOURS``;
- ``audit_addresses``: the client address (and its salt) of audit entries older than
  ``audit_address_retention_days``; the entries stay and the chain still verifies
  (decision record 0117).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog.log import expire_addresses
from storefront.identity.personal_data import purge_sessions
from storefront.jobs.periodic import PeriodicTask
from storefront.kit.db import utcnow
from storefront.privacy.models import DataExport, ExportStatus
from storefront.resources import Resources
from storefront.settings import Settings

logger = logging.getLogger("storefront.privacy.retention")
CATEGORIES = (
    "export_archives",
    "export_records",
    "refresh_tokens",
    "sessions",
    "idempotency_records",
    "audit_addresses",
)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0  # transactions the run took

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def _exports(
    session: AsyncSession,
    *,
    now: datetime,
    keep_records: timedelta,
    dry_run: bool,
    limit: int | None = None,
) -> dict[str, int]:
    records: ColumnElement[bool] = DataExport.expires_at <= now - keep_records
    # a record deleted by this run (now or in a later batch) needs no archive removal first
    archives: ColumnElement[bool] = (
        (DataExport.expires_at <= now) & (DataExport.status != ExportStatus.expired) & ~records
    )
    if dry_run:
        count = select(func.count()).select_from(DataExport)
        return {
            "export_archives": int(await session.scalar(count.where(archives)) or 0),
            "export_records": int(await session.scalar(count.where(records)) or 0),
        }
    if limit is not None:
        records = DataExport.id.in_(select(DataExport.id).where(records).limit(limit))
        archives = DataExport.id.in_(select(DataExport.id).where(archives).limit(limit))
    deleted = await session.execute(
        delete(DataExport).where(records).execution_options(synchronize_session=False)
    )
    expired = await session.execute(
        update(DataExport)
        .where(archives)
        .values(status=ExportStatus.expired, archive_sealed=None, size_bytes=None)
        .execution_options(synchronize_session=False)
    )
    return {
        "export_archives": int(getattr(expired, "rowcount", 0)),
        "export_records": int(getattr(deleted, "rowcount", 0)),
    }


async def _one_pass(
    resources: Resources, settings: Settings, *, now: datetime, dry_run: bool, limit: int | None
) -> dict[str, int]:
    """One transaction over every category (rolled back on a dry run)."""
    privacy = settings.privacy
    counts: dict[str, int] = {}
    async with resources.sessionmaker() as session:
        counts.update(
            await _exports(
                session,
                now=now,
                keep_records=timedelta(days=privacy.export_record_days),
                dry_run=dry_run,
                limit=limit,
            )
        )
        counts.update(
            await purge_sessions(
                session,
                now=now,
                idle=timedelta(seconds=settings.auth.session_idle_timeout_seconds),
                keep=timedelta(days=privacy.session_retention_days),
                dry_run=dry_run,
                limit=limit,
            )
        )
        counts["idempotency_records"] = await resources.idempotency.purge_expired(
            session, dry_run=dry_run, limit=limit
        )
        counts["audit_addresses"] = await expire_addresses(
            session,
            before=now - timedelta(days=privacy.audit_address_retention_days),
            dry_run=dry_run,
            limit=limit,
        )
        if dry_run:
            await session.rollback()
        else:
            await session.commit()
    return counts


async def run_retention(
    resources: Resources, settings: Settings, *, dry_run: bool = False
) -> RetentionReport:
    """Every category, in batches of ``retention_batch_size`` rows per transaction (a dry run:
    one read-only count, rolled back). The cut-off time is fixed at the start of the run."""
    now = utcnow()
    if dry_run:
        counts = await _one_pass(resources, settings, now=now, dry_run=True, limit=None)
        return RetentionReport(True, {name: counts[name] for name in CATEGORIES}, batches=1)
    batch = settings.privacy.retention_batch_size
    totals = dict.fromkeys(CATEGORIES, 0)
    batches = 0
    while True:
        counts = await _one_pass(resources, settings, now=now, dry_run=False, limit=batch)
        batches += 1
        for name in CATEGORIES:
            totals[name] += counts[name]
        if all(counts[name] < batch for name in CATEGORIES):
            return RetentionReport(False, totals, batches=batches)


class RetentionSchedule(PeriodicTask):
    """The periodic retention task of one process (the worker, or the API process when jobs
    run in-process), every ``STOREFRONT_PRIVACY__RETENTION_INTERVAL_SECONDS``. Several
    processes may run it: every statement is idempotent."""

    def __init__(self, resources: Resources, settings: Settings) -> None:
        async def run() -> None:
            report = await run_retention(resources, settings)
            if report.total:
                logger.info(
                    "retention deleted %s",
                    ", ".join(f"{name}={n}" for name, n in report.counts.items() if n),
                )

        super().__init__("retention", settings.privacy.retention_interval_seconds, run)
