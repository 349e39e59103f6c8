"""Helpers the migrations call: the per-revision timeouts on PostgreSQL, and the guard that
keeps a contract migration from running before its backfill is done (docs/migrations.md)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from storefront.kit.startup import CommandRefused

# a migration waits at most this long for a lock (then fails; run it again later), so a
# long-running query holding a lock never queues every other request behind the ALTER
LOCK_TIMEOUT = "5s"
# and no single statement of a migration runs longer than this (a table rewrite or a full
# scan that slipped through review fails instead of holding its lock for minutes)
STATEMENT_TIMEOUT = "60s"


def set_timeouts(*, lock: str = LOCK_TIMEOUT, statement: str = STATEMENT_TIMEOUT) -> None:
    """``SET LOCAL lock_timeout`` and ``statement_timeout`` for this revision's transaction
    (PostgreSQL; SQLite has neither). A revision that must run longer (an index built
    CONCURRENTLY on a big table) passes its own ``statement`` and says why."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"SET LOCAL lock_timeout = '{lock}'")
    op.execute(f"SET LOCAL statement_timeout = '{statement}'")


class BackfillIncomplete(CommandRefused):
    """A contract migration found rows its backfill has not reached yet (``storefront
    migrate`` says so and exits 1; the revision rolled back)."""


def require_backfilled(name: str, table: str, where: str) -> None:
    """Refuse (raise, which rolls the revision back) while ``table`` still has rows matching
    ``where``: the backfill ``name`` has not finished. Offline (SQL rendered for review) the
    check is written as a comment: it needs the data."""
    if context.is_offline_mode():
        op.execute(f"-- requires: no row of {table} where {where} (backfill {name} finished)")
        return
    remaining = (
        op.get_bind()
        .execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE {where}")  # noqa: S608  # nosec B608
        )
        .scalar_one()
    )
    if remaining:
        raise BackfillIncomplete(
            f"{remaining} row(s) of {table} still have {where}: the backfill {name!r} has not "
            f"finished. Run `storefront backfill {name}` (it resumes where it stopped), then "
            "migrate again. Nothing was changed."
        )
