"""Reconciliation: payments stuck ``processing`` (the synchronous answer was lost and no
webhook settled them) are settled from the provider, periodically, in the worker or (on the
embedded default) in the API process. Safe in several processes at once: each payment is
leased before the provider is asked (decision 0137)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from storefront.jobs.periodic import PeriodicTask
from storefront.kit.db import run_after_commit, utcnow
from storefront.payments.errors import PaymentInProgress, PaymentOutcomeUnknown
from storefront.payments.models import PaymentStatus
from storefront.payments.repository import stuck
from storefront.payments.service import REFUSED, PaymentService
from storefront.resources import Resources
from storefront.settings import Settings

logger = logging.getLogger("storefront.payments.reconcile")


async def reconcile(resources: Resources, *, now: datetime | None = None) -> int:
    """Settle every payment ``processing`` for longer than
    STOREFRONT_PAYMENTS__RECONCILE_AFTER_SECONDS at ``now`` (default: the current time)
    whose lease has run out; returns how many it settled."""
    settings = resources.settings.payments
    if resources.stripe is None:
        return 0
    now = now or utcnow()
    async with resources.sessionmaker() as session:
        due = [
            (payment.id, payment.shop_id)
            for payment in await stuck(
                session,
                older_than=now - timedelta(seconds=settings.reconcile_after_seconds),
                limit=settings.reconcile_batch_size,
            )
        ]
    settled = 0
    for payment_id, shop_id in due:
        async with resources.sessionmaker() as session:
            service = PaymentService.of(session, shop_id, resources)
            payment = await service.repo.get(payment_id)
            if payment is None or payment.status is not PaymentStatus.processing:
                continue
            try:
                result = await service.resume(payment, now=now)
            except PaymentInProgress:
                continue  # someone holds it: its lease decides
            except PaymentOutcomeUnknown:
                logger.warning("payment %s: provider unavailable, tried again later", payment_id)
                continue
            except REFUSED as exc:
                # the provider's circuit is open (or no endpoint is known): the rest of the
                # batch would be refused too; the next run tries again
                logger.warning("reconciliation paused: %s", exc)
                break
            finally:
                await session.commit()
                await run_after_commit(session)
            if result.status is not PaymentStatus.processing:
                settled += 1
    return settled


class ReconciliationSchedule(PeriodicTask):
    """Every STOREFRONT_PAYMENTS__RECONCILE_INTERVAL_SECONDS (0: off)."""

    def __init__(self, resources: Resources, settings: Settings) -> None:
        async def run() -> None:
            settled = await reconcile(resources)
            if settled:
                logger.info("reconciled %d payment(s) with the provider", settled)

        super().__init__(
            "payment reconciliation", settings.payments.reconcile_interval_seconds, run
        )
