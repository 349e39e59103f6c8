"""Read/write splitting over a streaming replica (decision 0150, docs/replica.md).

:class:`ReadRouter` hands out :data:`ReadSession` s: on the replica when one is configured,
healthy (its lag under both thresholds, measured every ``interval`` seconds) and has replayed
at least ``min_lsn`` (the commit LSN of the caller's last write: read-your-writes); otherwise
on the primary, and each such fallback is counted by reason. A replica that fails while a
session is being opened is marked down at once; the next measurement that finds it healthy
brings reads back to it. Without a replica (SQLite, or no STOREFRONT_DATABASE_REPLICA_URL)
every read session is a primary read session, through the same code.

Write LSNs: after a write commits on PostgreSQL, :meth:`ReadRouter.write_lsn` asks the
primary for ``pg_current_wal_insert_lsn()``, which is at or past that commit's record; a replica
whose ``pg_last_wal_replay_lsn()`` is at or past it shows the write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storefront.infra.availability import spawn
from storefront.kit.db import ReadSession, autocommit, read_session, snapshot_session

logger = logging.getLogger("storefront.replica")

REPLICA_LAG_BYTES = Gauge(
    "storefront_db_replica_lag_bytes",
    "WAL the read replica has not replayed yet (the primary's flush position minus its replay "
    "position; 0 while it is caught up).",
    multiprocess_mode="max",
)
REPLICA_LAG_SECONDS = Gauge(
    "storefront_db_replica_lag_seconds",
    "How old what the read replica shows may be, in seconds: 0 while it shows everything the "
    "primary had committed when last measured, however long ago the last commit was.",
    multiprocess_mode="max",
)
REPLICA_UP = Gauge(
    "storefront_db_replica_up",
    "1 while reads may go to the read replica (reachable, in recovery, under the lag "
    "thresholds), 0 while they fall back to the primary.",
    multiprocess_mode="min",
)
READS = Counter(
    "storefront_db_reads",
    "Read sessions opened, by the server they read from (replica or primary).",
    ["target"],
)
FALLBACKS = Counter(
    "storefront_db_replica_fallbacks",
    "Read sessions sent to the primary although a replica is configured, by reason: down "
    "(unreachable or not a standby), lagging (over a lag threshold), behind (it has not yet "
    "replayed the client's own last write).",
    ["reason"],
)

FallbackReason = Literal["down", "lagging", "behind"]
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

# the replica's side of a measurement: whether it is a standby, what it has replayed and
# received, the newest transaction it has seen complete (its snapshot's xmax) and the age of
# the last commit it replayed (on the replica's clock)
_REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), "
    "pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, "
    "pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')"
    "::bigint, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint, "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)
# the primary's side, read first: what it has flushed (all a standby can have received) and
# the newest transaction it has seen complete
_PRIMARY_STATE = text(
    "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
)
_REPLAY_LSN = text("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint")
# after a commit: the end of what has been inserted into the WAL, so at or past the commit
# record even under synchronous_commit = off (pg_current_wal_lsn(), the *written* position,
# may still be before it, and a replica there would not show the write)
_INSERT_LSN = text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")


_FAILOVER = "storefront.replica.failover"


class FailoverSession(Session):
    """The replica's read sessions: a statement the replica fails under (stopped, restarted,
    a connection it dropped, a recovery conflict) runs again on the primary, once, and the
    session stays there. A read is never older on the primary, and a read session writes
    nothing, so running it again changes nothing; an error that is the statement's own fails
    on the primary as well and is raised from there."""

    def _execute_internal(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._execute_internal(*args, **kwargs)
        except DBAPIError as exc:
            failover = self.info.pop(_FAILOVER, None)
            if failover is None or kwargs.get("_parent_execute_state") is not None:
                raise
            primary, failed = failover
            failed(exc)
            self.close()  # gives the replica's connection back (invalidated)
            self.bind = primary
            return super()._execute_internal(*args, **kwargs)


def parse_lsn(value: str | None) -> int:
    """``'16/B374D848'`` (PostgreSQL's text form) as a number; 0 for anything else (a
    malformed header value asks for nothing rather than failing the read)."""
    if not value:
        return 0
    match = _LSN.match(value.strip())
    if match is None:
        return 0
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def principal_key(authorization: str | None) -> str | None:
    """Who is asking, for the read-your-writes pin: a digest of the credentials (the same
    bearer token, the same principal); None for an anonymous request."""
    if not authorization:
        return None
    return hashlib.blake2b(authorization.encode(), digest_size=16).hexdigest()


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True, slots=True)
class ReplicaState:
    up: bool  # reads may go there
    reason: str | None  # why not, when not
    lag_bytes: int | None
    lag_seconds: float | None
    replay_lsn: int | None
    checked_at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class PrimarySample:
    """The primary at the start of a measurement (``at``, time.monotonic()): the WAL it had
    flushed (all a standby can have received) and its snapshot's xmax (every transaction
    below it, not in progress, had completed)."""

    at: float
    flushed: int
    xmax: int


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """The replica just after: what it has replayed and received, its snapshot's xmax, and
    the age in seconds of the last commit it replayed (None before the first)."""

    replayed: int
    received: int
    xmax: int
    commit_age: float | None

    def shows(self, primary: PrimarySample) -> bool:
        """Whether the replica shows everything the primary had committed at that sample:
        it has replayed all the primary had flushed, or it has received all of it and seen
        every transaction complete that the primary had. The second case is a caught-up
        replica whose replay stops short of the primary's flush position: the walwriter
        flushes complete WAL pages, so an idle primary's flushed WAL can end in the head of a
        record (an open transaction's, a checkpoint's) whose tail is still in its buffers; the
        standby cannot replay that head, and nothing committed is in it."""
        return self.replayed >= primary.flushed or (
            self.received >= primary.flushed and self.xmax >= primary.xmax
        )


class LagClock:
    """The replica's lag from successive measurements. Caught up (it shows everything the
    primary had committed when the measurement began): no lag, however old the last commit
    is (an idle primary's healthy replica). Otherwise the lag in time is the smaller of two
    upper bounds on how old what it shows is: the time since the start of the newest
    measurement it has now caught up with, and the age of the last commit it replayed; with
    neither (no measurement caught up yet, nothing replayed), the time since the oldest
    measurement it has not caught up with."""

    def __init__(self, keep: int = 1000) -> None:
        self._pending: deque[PrimarySample] = deque(maxlen=keep)
        self._caught_up_at: float | None = None

    def measure(
        self, primary: PrimarySample, replica: ReplicaSample, now: float
    ) -> tuple[int, float]:
        """(lag in bytes, lag in seconds) at ``now``."""
        if replica.shows(primary):
            self._pending.clear()
            self._caught_up_at = max(self._caught_up_at or primary.at, primary.at)
            return 0, 0.0
        self._pending.append(primary)
        while self._pending and replica.shows(self._pending[0]):
            earlier = self._pending.popleft()
            self._caught_up_at = max(self._caught_up_at or earlier.at, earlier.at)
        bounds = [now - self._caught_up_at] if self._caught_up_at is not None else []
        if replica.commit_age is not None:
            bounds.append(max(replica.commit_age, 0.0))
        seconds = min(bounds) if bounds else now - self._pending[0].at
        return max(primary.flushed - replica.replayed, 0), max(seconds, 0.0)


class WritePins:
    """Per-principal read-your-writes pins in this process: the last write LSN of a
    principal (a key derived from its credentials), for ``ttl`` seconds. Bounded: the oldest
    pins go first past ``max_entries``."""

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._pins: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def pin(self, key: str, lsn: int) -> None:
        if self.ttl <= 0:
            return
        previous = self._pins.pop(key, None)
        if previous is not None:
            lsn = max(lsn, previous[0])
        self._pins[key] = (lsn, time.monotonic() + self.ttl)
        while len(self._pins) > self.max_entries:
            self._pins.popitem(last=False)

    def get(self, key: str) -> int:
        found = self._pins.get(key)
        if found is None:
            return 0
        if found[1] < time.monotonic():
            self._pins.pop(key, None)
            return 0
        return found[0]


class ReadRouter:
    def __init__(
        self,
        primary: async_sessionmaker[AsyncSession],
        replica: AsyncEngine | None = None,
        *,
        max_lag_bytes: int = 16 * 1024 * 1024,
        max_lag_seconds: float = 5.0,
        interval: float = 1.0,
        timeout: float = 2.0,
        pin_seconds: float = 30.0,
    ) -> None:
        self.primary = primary
        self.replica = (
            None
            if replica is None
            else async_sessionmaker(
                replica,
                expire_on_commit=False,
                autoflush=False,
                sync_session_class=FailoverSession,
            )
        )
        # where a replica session moves when the replica fails under it (FailoverSession)
        self._failover_binds: dict[bool, Engine] = {}
        self._autocommit: dict[AsyncEngine, AsyncEngine] = {}
        if replica is not None:
            engine = self.primary_engine
            self._autocommit = {engine: autocommit(engine), replica: autocommit(replica)}
            self._failover_binds = {
                False: self._autocommit[engine].sync_engine,
                True: engine.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                ).sync_engine,
            }
        self.max_lag_bytes = max_lag_bytes
        self.max_lag_seconds = max_lag_seconds
        self.interval = interval
        self.timeout = timeout
        self.pins = WritePins(pin_seconds)
        # the newest write LSN this process has seen committed: shared fills (the response
        # cache) wait for it, so a fill never stores what this process's last write replaced
        self.high_water = 0
        self._replay_lsn = 0  # the newest replay LSN seen on the replica (it only grows)
        self.state: ReplicaState | None = None
        self._lag = LagClock()
        self._task: asyncio.Task[None] | None = None
        if replica is not None:
            REPLICA_UP.set(0)

    @property
    def enabled(self) -> bool:
        return self.replica is not None

    @property
    def primary_engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.primary.kw["bind"]
        return engine

    @property
    def replica_engine(self) -> AsyncEngine | None:
        if self.replica is None:
            return None
        engine: AsyncEngine = self.replica.kw["bind"]
        return engine

    # --- health ---------------------------------------------------------------------------
    async def check(self) -> ReplicaState | None:
        """Measure the replica's lag now; set the metrics and whether reads may go there."""
        replica = self.replica_engine
        if replica is None:
            return None
        started = time.monotonic()
        try:
            with anyio.fail_after(self.timeout):
                # the primary first: a replica read after it that has replayed this far shows
                # everything the primary had committed when the measurement began
                async with self._autocommit[self.primary_engine].connect() as conn:
                    flushed, xmax = (await conn.execute(_PRIMARY_STATE)).one()
                async with self._autocommit[replica].connect() as conn:
                    row = (await conn.execute(_REPLICA_STATE)).one()
        except Exception as exc:  # noqa: BLE001 - the replica is down; reads go to the primary
            return self._set(ReplicaState(False, type(exc).__name__, None, None, None, started))
        in_recovery, replay = bool(row[0]), int(row[1] or 0)
        self._replay_lsn = max(self._replay_lsn, replay)
        lag_bytes, seconds = self._lag.measure(
            PrimarySample(started, int(flushed), int(xmax)),
            ReplicaSample(
                replay,
                int(row[2] or 0),
                int(row[3] or 0),
                None if row[4] is None else float(row[4]),
            ),
            time.monotonic(),
        )
        REPLICA_LAG_BYTES.set(lag_bytes)
        REPLICA_LAG_SECONDS.set(seconds)
        if not in_recovery:
            state = ReplicaState(False, "not a standby", lag_bytes, seconds, replay, started)
            return self._set(state)
        if lag_bytes > self.max_lag_bytes or seconds > self.max_lag_seconds:
            reason = f"lagging {lag_bytes} bytes, {seconds:.1f} s"
            return self._set(ReplicaState(False, reason, lag_bytes, seconds, replay, started))
        return self._set(ReplicaState(True, None, lag_bytes, seconds, replay, started))

    def _set(self, state: ReplicaState) -> ReplicaState:
        previous = self.state
        if previous is not None and state.checked_at < previous.checked_at:
            return previous  # a check that began before a newer verdict: stale
        if (previous is None or previous.up) and not state.up:
            logger.warning("read replica not used: %s; reads go to the primary", state.reason)
        elif previous is not None and not previous.up and state.up:
            logger.info("read replica healthy again; reads go to it")
        self.state = state
        REPLICA_UP.set(1 if state.up else 0)
        return state

    def _failed_under_a_read(self, exc: BaseException) -> None:
        logger.warning("a read failed on the replica (%s); it runs on the primary", exc)
        self._mark_down(exc)
        FALLBACKS.labels(reason="down").inc()
        READS.labels(target="primary").inc()

    def _mark_down(self, exc: BaseException) -> None:
        self._set(ReplicaState(False, type(exc).__name__, None, None, None, time.monotonic()))

    def status(self) -> dict[str, Any]:
        """The replica's component in /healthz: up, or degraded while reads fall back."""
        state = self.state
        if state is None:
            return {"status": "degraded", "detail": "not measured yet"}
        body: dict[str, Any] = {
            "status": "up" if state.up else "degraded",
            "lag_bytes": state.lag_bytes,
            "lag_seconds": None if state.lag_seconds is None else round(state.lag_seconds, 3),
            "max_lag_bytes": self.max_lag_bytes,
            "max_lag_seconds": self.max_lag_seconds,
        }
        if not state.up:
            body["detail"] = f"reads go to the primary: {state.reason}"
        return body

    def start(self) -> None:
        if self.replica is not None and self._task is None and self.interval > 0:
            self._task = spawn(self._run(), name="storefront-replica-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                logger.exception("measuring the read replica failed")
            await asyncio.sleep(self.interval)

    # --- writes ---------------------------------------------------------------------------
    async def write_lsn(self) -> int | None:
        """The primary's WAL insert position now, after a write committed: at or past its
        commit record. None without a replica (nothing to wait for) or when it cannot be read."""
        if self.replica is None:
            return None
        try:
            async with self._autocommit[self.primary_engine].connect() as conn:
                lsn = int((await conn.execute(_INSERT_LSN)).scalar_one())
        except Exception:  # noqa: BLE001 - the write is committed; reads will use the primary
            logger.warning("could not read the write LSN; this client reads from the primary")
            lsn = 1 << 62  # no replica will be there for a long while: the primary serves
        self.high_water = max(self.high_water, lsn)
        return lsn

    # --- reads ----------------------------------------------------------------------------
    async def session(self, *, min_lsn: int = 0, snapshot: bool = False) -> ReadSession:
        """A read session (the caller closes it): on the replica when it is healthy and has
        replayed ``min_lsn``, else on the primary. ``snapshot``: one REPEATABLE READ, READ
        ONLY transaction (an export), else autocommit statements (kit/db.py)."""
        make = snapshot_session if snapshot else read_session
        if self.replica is not None:
            state = self.state
            if state is None or not state.up:
                FALLBACKS.labels(reason="down" if _is_down(state) else "lagging").inc()
            else:
                session = make(self.replica)
                session.sync_session.info[_FAILOVER] = (
                    self._failover_binds[snapshot],
                    self._failed_under_a_read,
                )
                try:
                    with anyio.fail_after(self.timeout):
                        if await self._caught_up(session, min_lsn):
                            READS.labels(target="replica").inc()
                            return ReadSession(session)
                    FALLBACKS.labels(reason="behind").inc()
                except Exception as exc:  # noqa: BLE001 - the primary serves this read
                    self._mark_down(exc)
                    FALLBACKS.labels(reason="down").inc()
                await _close_quietly(session)
        READS.labels(target="primary").inc()
        return ReadSession(make(self.primary))

    async def _caught_up(self, session: AsyncSession, min_lsn: int) -> bool:
        """Take the session's replica connection now (a dead replica fails here, before the
        caller reads) and make sure it has replayed ``min_lsn``: the replay position only
        grows, so what this connection reads next includes that write."""
        conn = await session.connection()
        if min_lsn <= self._replay_lsn:
            return True
        replay = int((await conn.execute(_REPLAY_LSN)).scalar_one() or 0)
        self._replay_lsn = max(self._replay_lsn, replay)
        return replay >= min_lsn


def _is_down(state: ReplicaState | None) -> bool:
    return state is None or state.lag_bytes is None


async def _close_quietly(session: AsyncSession) -> None:
    try:
        with anyio.CancelScope(shield=True):
            await session.close()
    except Exception:  # a connection to a dead server: the pool drops it
        logger.debug("closing a replica session failed", exc_info=True)
