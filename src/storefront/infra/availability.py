"""Dependencies that may be away: what counts as "unavailable", back-off, and logging per change.

A database that is unreachable, not migrated or out of pooled connections, or a Redis or
broker that is down, is not a bug: requests answer 503 with ``Retry-After`` (the error
mapping asks :func:`unavailable_reason`), background loops wait with :class:`Backoff`, and
the log gets one line when a dependency goes away ("database unavailable: <reason>,
retrying with backoff") and one when it is back ("database available again"), never a line
per attempt (:func:`dependency`).

Background tasks start with a clean context (:func:`spawn`): a task created while a request
is being handled would otherwise carry that request's id into every line it logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import exc as sa_exc

logger = logging.getLogger("storefront.availability")

RETRY_AFTER_SECONDS = 5
# how a reason for a missing table or column begins: the error mapping asks the database
# whether it is migrated before calling it an outage (at head, it is a bug in the code)
MISSING_SCHEMA = "schema "

# PostgreSQL SQLSTATEs meaning "the schema is not there (yet)": undefined table, column
_MISSING_SCHEMA = frozenset({"42P01", "42703"})
# ... and "the server or the database is not there, or accepts no connection now":
# invalid catalog name (no such database), too many connections, shutting down / starting up
_UNREACHABLE = frozenset({"3D000", "53300", "57P01", "57P02", "57P03"})
_UNREACHABLE_CLASSES = ("08",)  # connection exceptions


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unavailable_reason(exc: BaseException) -> tuple[str, str] | None:
    """``(dependency, reason)`` when ``exc`` means a dependency is away (not a bug): the
    database unreachable, not migrated or its pool exhausted, Redis down. None otherwise."""
    from redis import exceptions as redis_exc

    for err in _chain(exc):
        if isinstance(err, sa_exc.TimeoutError):
            return "database", "no pooled connection free within the pool timeout"
        if isinstance(err, redis_exc.ConnectionError | redis_exc.TimeoutError):
            return "redis", type(err).__name__
        if isinstance(err, sa_exc.DBAPIError):
            orig = err.orig
            message = str(orig).lower() if orig is not None else ""
            state = _sqlstate(err)
            if state in _MISSING_SCHEMA or "no such table" in message:
                return "database", MISSING_SCHEMA + "missing (not migrated): " + _short(orig)
            if "no such column" in message:
                return "database", MISSING_SCHEMA + "out of date (not migrated): " + _short(orig)
            if (
                err.connection_invalidated
                or state in _UNREACHABLE
                or (state is not None and state.startswith(_UNREACHABLE_CLASSES))
                or isinstance(err, sa_exc.InterfaceError)
                or (isinstance(err, sa_exc.OperationalError) and state is None)
            ):
                return "database", _short(orig or err)
        if isinstance(err, OSError) and _from_db(err):
            # raised while connecting (asyncpg's OSError passes through SQLAlchemy's connect)
            return "database", _short(err)
    return None


# ... and "the database is there but could not finish this statement in time": a statement
# cancelled by statement_timeout (query_canceled), a lock not granted within lock_timeout
_BUSY = frozenset({"57014", "55P03"})


def busy_reason(exc: BaseException) -> str | None:
    """Why the database gave up on a statement it was able to run (statement_timeout, a row
    lock held too long by concurrent writers), or None. Not an outage and not a bug in the
    request: a 503 with ``Retry-After``, and the database is not marked away."""
    for err in _chain(exc):
        if isinstance(err, sa_exc.DBAPIError) and _sqlstate(err) in _BUSY:
            return _short(err.orig or err)
    return None


def _sqlstate(err: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE somewhere in the chain (asyncpg, psycopg), if any."""
    for link in _chain(err):
        for holder in (link, getattr(link, "orig", None)):
            code = getattr(holder, "sqlstate", None) or getattr(holder, "pgcode", None)
            if isinstance(code, str) and len(code) == 5:
                return code
    return None


def _from_db(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("asyncpg", "aiosqlite", "sqlalchemy", "psycopg")):
            return True
        tb = tb.tb_next
    return False


def _short(err: object) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    name = type(err).__name__
    return f"{name}: {text}"[:200] if text else name


class DependencyStatus:
    """Up or down, logged once per change of state (not per failed attempt).

    A probe that began before the last change of state is stale: a readiness check whose
    PING answered just before Redis died, applied after a request saw it gone, must not
    announce "available again" (nor a stale failure a new outage). Callers that know when
    they looked pass ``observed_at`` (``time.monotonic()`` when the probe began)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down_reason: str | None = None
        self.changed_at = float("-inf")

    @property
    def is_up(self) -> bool:
        return self.down_reason is None

    def down(self, reason: str, *, observed_at: float | None = None) -> None:
        if self.down_reason is None:
            if observed_at is not None and observed_at < self.changed_at:
                return  # seen before it came back: stale
            logger.warning("%s unavailable: %s, retrying with backoff", self.name, reason)
            self.changed_at = time.monotonic()
        self.down_reason = reason

    def up(self, *, observed_at: float | None = None) -> None:
        if self.down_reason is not None:
            if observed_at is not None and observed_at < self.changed_at:
                return  # seen before it went away: stale
            self.down_reason = None
            self.changed_at = time.monotonic()
            logger.info("%s available again", self.name)


_STATUSES: dict[str, DependencyStatus] = {}


def dependency(name: str) -> DependencyStatus:
    """The process-wide status of one dependency ("database", "redis", "broker")."""
    status = _STATUSES.get(name)
    if status is None:
        status = _STATUSES[name] = DependencyStatus(name)
    return status


def _reset_statuses() -> None:  # for tests: several apps share one process
    _STATUSES.clear()


def report_failure(exc: BaseException) -> bool:
    """Record ``exc`` when it means a dependency is away (True); False for anything else."""
    found = unavailable_reason(exc)
    if found is None:
        return False
    dependency(found[0]).down(found[1])
    return True


class Backoff:
    """Exponential back-off with "equal jitter": ``base * 2^(n-1)`` capped at ``cap``, half
    of it fixed and half random, so many processes do not retry in step."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = max(base, 0.01)
        self.cap = max(cap, self.base)
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.base * 2.0 ** min(self.failures - 1, 30), self.cap)
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  # nosec B311

    def reset(self) -> None:
        self.failures = 0


def spawn(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """A background task in a fresh, empty context: it never inherits the request id (or any
    other context variable) of a request that happened to be running when it was created."""
    return asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
