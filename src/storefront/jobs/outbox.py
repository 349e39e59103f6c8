"""The job outbox: a deferred job is a row written in the caller's own transaction, sent after
the commit and, failing that, by the relay loop; delivery is at least once, so every job must
be idempotent (docs/decisions/0059-job-outbox.md)."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import JSON, Index, String, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from storefront.infra.availability import Backoff, dependency, report_failure, spawn
from storefront.kit.db import Base, new_id, snapshot_session, utcnow

logger = logging.getLogger("storefront.jobs.outbox")

MAX_ERROR_LENGTH = 1000
_DELETE_CHUNK = 500
STOP_FLUSH_SECONDS = 5.0  # at shutdown, how long recording the fast path's sends may take
DOWN_BACKOFF_CAP = 30.0  # the longest wait between passes while the database is away


class OutboxEntry(Base):
    """A job waiting to be handed to the broker."""

    __tablename__ = "job_outbox"
    __table_args__ = (Index("ix_job_outbox_next_attempt_at", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)  # time-ordered
    job: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    # W3C traceparent/tracestate of the request that deferred it: the job span joins its trace
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)  # sends tried by a relay
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_LENGTH))


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """What a relay sends: one row's job, arguments and trace context."""

    id: uuid.UUID
    job: str
    kwargs: dict[str, Any]
    trace_context: dict[str, str] = field(default_factory=dict)
    attempts: int = 0


def new_entry(
    job: str, kwargs: dict[str, Any], trace_context: dict[str, str], *, due_after: timedelta
) -> tuple[OutboxEntry, OutboxMessage]:
    """A row to add to the caller's session, and what the fast path will send for it."""
    now = utcnow()
    entry = OutboxEntry(
        id=new_id(),
        job=job,
        kwargs=kwargs,
        trace_context=trace_context or None,
        created_at=now,
        attempts=0,
        next_attempt_at=now + due_after,
    )
    return entry, OutboxMessage(entry.id, job, kwargs, trace_context)


class UnknownJob(LookupError):
    """The row names a job this process does not declare (renamed, or an older release)."""


Send = Callable[[OutboxMessage], Awaitable[None]]


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    rows: int
    oldest_age_seconds: float  # 0 when empty


class OutboxRelay:
    """Sends outbox rows to the broker: right after a commit, and from a polling loop."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        send: Send,
        *,
        poll_seconds: float,
        lease_seconds: float,
        batch_size: int,
        send_timeout: float,
        base_delay: float,
        max_delay: float,
        can_send: Callable[[], bool] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # False while the broker is away: rows are left alone (not claimed, no error logged)
        self._can_send = can_send or (lambda: True)
        self._send = send
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        self.send_timeout = send_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.relayed = 0
        self._delivered: list[uuid.UUID] = []  # sent on the fast path, row still to delete
        self._failed: dict[uuid.UUID, str] = {}  # fast path refused: back-off and the error
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the fast path -----------------------------------------------------------------------
    async def send_after_commit(self, message: OutboxMessage) -> bool:
        """Send a just-committed row now; True when the broker took it. Never raises: on
        failure the row stays for the relay loop (after a short back-off)."""
        try:
            with anyio.fail_after(self.send_timeout):
                await self._send(message)
        except Exception as exc:  # noqa: BLE001 - whatever the broker did, the row stays
            self._failed[message.id] = describe_error(exc)
            self._wake.set()
            logger.warning(
                "job %s not sent after commit (%s); the outbox relay will retry it",
                message.job,
                describe_error(exc),
            )
            return False
        self._delivered.append(message.id)
        self._wake.set()
        return True

    # --- the loop ------------------------------------------------------------------------------
    def wake(self) -> None:
        """Run a pass now (the broker just became reachable)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="storefront-outbox-relay")

    async def stop(self) -> None:
        """Stop the loop, then record what the fast path did since its last pass."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with anyio.move_on_after(STOP_FLUSH_SECONDS, shield=True):
            try:
                await self.flush()
            except Exception:
                logger.exception("outbox: could not record sent jobs at shutdown")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = 0.0
        # the database away (or not migrated): wait longer after each failed pass (capped,
        # with jitter), and log once when it goes and once when it is back, not per pass
        backoff = Backoff(self.poll_seconds, max(min(self.max_delay, DOWN_BACKOFF_CAP), 1.0))
        database = dependency("database")
        while True:
            try:
                await self.flush()
                if loop.time() >= next_poll:
                    next_poll = loop.time() + self.poll_seconds
                    while await self.relay_due() >= self.batch_size:
                        await self.flush()
            except Exception as exc:
                if not report_failure(exc) and backoff.failures == 0:
                    logger.exception("outbox relay pass failed; retrying with backoff")
                next_poll = loop.time() + backoff.next_delay()
            else:
                if backoff.failures:
                    backoff.reset()
                    database.up()
            with anyio.move_on_after(max(next_poll - loop.time(), 0.0)):
                await self._wake.wait()
            self._wake.clear()

    async def flush(self) -> None:
        """Delete the rows the fast path sent; push back the ones it could not send."""
        delivered, self._delivered = self._delivered, []
        failed, self._failed = self._failed, {}
        if not delivered and not failed:
            return
        try:
            async with self.sessionmaker() as session, session.begin():
                await self._delete(session, delivered)
                now = utcnow()
                for entry_id, error in failed.items():
                    await session.execute(
                        update(OutboxEntry)
                        .where(OutboxEntry.id == entry_id)
                        .values(
                            attempts=OutboxEntry.attempts + 1,
                            next_attempt_at=now + self.backoff(1),
                            last_error=error,
                        )
                    )
        except BaseException:
            # keep them for the next pass (or a relay resends: at least once, never lost)
            self._delivered[:0] = delivered
            self._failed = {**failed, **self._failed}
            raise

    @staticmethod
    async def _delete(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start : start + _DELETE_CHUNK]
            await session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(chunk)))

    def backoff(self, attempts: int) -> timedelta:
        """``base * 2^(attempts-1)``, capped, with "equal jitter" (half fixed, half random)."""
        delay = min(self.base_delay * 2.0 ** max(attempts - 1, 0), self.max_delay)
        jittered = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  # nosec B311
        return timedelta(seconds=max(jittered, 0.05))

    async def _anything_due(self, now: datetime) -> bool:
        # a read-only snapshot: an idle relay never takes SQLite's write lock
        async with snapshot_session(self.sessionmaker) as session:
            found = await session.scalar(
                select(OutboxEntry.id).where(OutboxEntry.next_attempt_at <= now).limit(1)
            )
        return found is not None

    async def relay_due(self) -> int:
        """One pass: claim up to ``batch_size`` due rows, send them, record the outcome.
        Returns how many rows were claimed."""
        if not self._can_send():
            return 0
        now = utcnow()
        if not await self._anything_due(now):
            return 0
        async with self.sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(
                        OutboxEntry.id,
                        OutboxEntry.job,
                        OutboxEntry.kwargs,
                        OutboxEntry.trace_context,
                        OutboxEntry.attempts,
                    )
                    .where(OutboxEntry.next_attempt_at <= now)
                    .order_by(OutboxEntry.next_attempt_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                # claimed: nobody else sends them within the lease, even once committed
                await session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_([row.id for row in rows]))
                    .values(attempts=OutboxEntry.attempts + 1, next_attempt_at=now + self.lease)
                )
        if not rows:
            return 0
        messages = [
            OutboxMessage(row.id, row.job, row.kwargs, row.trace_context or {}, row.attempts + 1)
            for row in rows
        ]
        sent: list[uuid.UUID] = []
        failed: dict[uuid.UUID, tuple[int, str]] = {}
        broker_error: str | None = None
        for message in messages:
            if broker_error is not None:
                # the broker just refused: don't wait out a timeout for every row of the batch
                failed[message.id] = (message.attempts, broker_error)
                continue
            try:
                with anyio.fail_after(self.send_timeout):
                    await self._send(message)
            except UnknownJob as exc:
                failed[message.id] = (message.attempts, describe_error(exc))
            except Exception as exc:  # noqa: BLE001 - recorded on the row, retried later
                broker_error = describe_error(exc)
                failed[message.id] = (message.attempts, broker_error)
            else:
                sent.append(message.id)
        async with self.sessionmaker() as session, session.begin():
            await self._delete(session, sent)
            done = utcnow()
            for entry_id, (attempts, error) in failed.items():
                await session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id == entry_id)
                    .values(next_attempt_at=done + self.backoff(attempts), last_error=error)
                )
        self.relayed += len(sent)
        if sent:
            logger.info("outbox relay sent %d job(s)", len(sent))
        if failed:
            logger.warning(
                "outbox relay could not send %d job(s): %s",
                len(failed),
                broker_error or next(iter(failed.values()))[1],
            )
        return len(rows)

    async def backlog(self) -> OutboxBacklog:
        """Rows waiting and the age of the oldest (ids are time-ordered: no extra index)."""
        async with snapshot_session(self.sessionmaker) as session:
            rows = await session.scalar(select(func.count()).select_from(OutboxEntry)) or 0
            oldest = await session.scalar(
                select(OutboxEntry.created_at).order_by(OutboxEntry.id).limit(1)
            )
        age = max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        return OutboxBacklog(int(rows), age)
