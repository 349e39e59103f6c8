"""Expiry of unpaid orders: a pending order past its payment window becomes ``expired`` and
its stock goes back on sale, in batches, safe to run in several processes at once
(docs/decisions/0118-unpaid-orders-expire-and-hold-limits.md)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select

from storefront.jobs.periodic import PeriodicTask
from storefront.kit.db import run_after_commit, utcnow
from storefront.orders.models import Order, OrderStatus
from storefront.orders.service import OrderService
from storefront.resources import Resources
from storefront.settings import OrdersSettings, Settings

logger = logging.getLogger("storefront.orders.expiry")


def _due(now: datetime, window: timedelta) -> ColumnElement[bool]:
    return (Order.status == OrderStatus.pending) & (
        (Order.expires_at <= now)
        | (Order.expires_at.is_(None) & (Order.created_at <= now - window))
    )


async def _one_batch(
    resources: Resources, orders: OrdersSettings, now: datetime
) -> tuple[int, int]:
    """(orders taken, orders expired) in one transaction."""
    async with resources.sessionmaker() as session:
        stmt = (
            select(Order.id, Order.shop_id)
            .where(_due(now, timedelta(minutes=orders.payment_window_minutes)))
            .limit(orders.expiry_batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = (await session.execute(stmt)).all()
        expired = 0
        for order_id, shop_id in rows:
            service = OrderService(
                session,
                shop_id,
                cache=resources.cache,
                vault=resources.vault,
                jobs=resources.jobs,
                orders=orders,
            )
            if await service.expire(order_id):
                expired += 1
        await session.commit()
        # the after-commit work of the batch: cache invalidation of the products whose
        # stock came back, and the webhook jobs
        await run_after_commit(session)
    return len(rows), expired


async def expire_due(
    resources: Resources, orders: OrdersSettings, *, now: datetime | None = None
) -> int:
    """Expire every pending order due at ``now`` (default: the current time, fixed at the
    start of the run); returns how many this run expired."""
    now = now or utcnow()
    total = 0
    while True:
        taken, expired = await _one_batch(resources, orders, now)
        total += expired
        if taken < orders.expiry_batch_size:
            return total


class OrderExpirySchedule(PeriodicTask):
    """The periodic expiry task of one process (the worker, or the API process when jobs run
    in-process), every ``STOREFRONT_ORDERS__EXPIRY_INTERVAL_SECONDS``."""

    def __init__(self, resources: Resources, settings: Settings) -> None:
        orders = settings.orders

        async def run() -> None:
            expired = await expire_due(resources, orders)
            if expired:
                logger.info("expired %d unpaid order(s)", expired)

        super().__init__("order expiry", orders.expiry_interval_seconds, run)
