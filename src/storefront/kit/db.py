"""Async database access: engine factory, declarative base, sessions, dialect helpers."""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NewType, TypeVar, cast

import anyio
import uuid6
from sqlalchemy import DateTime, MetaData, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """Time-ordered UUIDv7: index-friendly primary keys and natural keyset order."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}
_POSTGRES_SCHEMES |= {"postgresql+psycopg2", "postgres+asyncpg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}


def normalise_database_url(database_url: str) -> str:
    """The URL with the async driver this service uses: ``postgres://``, ``postgresql://``
    (and the psycopg spellings) -> ``postgresql+asyncpg://`` (libpq's ``sslmode`` becomes
    asyncpg's ``ssl``), ``sqlite://`` -> ``sqlite+aiosqlite://``. Any other scheme, or no
    URL at all, is a ValueError that says what is accepted (never the URL: it may hold a
    password)."""
    scheme, sep, rest = database_url.partition("://")
    accepted = "use postgresql://user:password@host:5432/name or sqlite:///path/to/file.db"
    if not sep or not scheme:
        raise ValueError(f"not a database URL; {accepted}")
    scheme = scheme.lower()
    try:
        url = make_url(database_url)
    except Exception as exc:
        raise ValueError(f"not a valid database URL; {accepted}") from exc
    if scheme in _POSTGRES_SCHEMES:
        driver = "postgresql+asyncpg"
        if "sslmode" in url.query and "ssl" not in url.query:
            head, _, query = rest.partition("?")
            params = [f"ssl{p[7:]}" if p.startswith("sslmode=") else p for p in query.split("&")]
            rest = f"{head}?{'&'.join(params)}"
    elif scheme in _SQLITE_SCHEMES:
        driver = "sqlite+aiosqlite"
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}; {accepted}")
    # only the scheme changes: re-rendering the URL would re-quote the path and password
    return f"{driver}://{rest}"


def _ensure_sqlite_dir(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


# how long opening one PostgreSQL connection may take, end to end (decision 0195)
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.0


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 5,
    pool_timeout: float = 5.0,
    pool_recycle: int = 1800,
    pool_pre_ping: bool = False,
    statement_timeout_ms: int = 0,
    echo: bool = False,
    application_name: str = "storefront",
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        _ensure_sqlite_dir(url)
        engine = create_async_engine(
            url,
            echo=echo,
            pool_pre_ping=pool_pre_ping,
            connect_args={"timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    server_settings = {"application_name": application_name}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    # the whole connect (TCP, TLS, startup, authentication) within ``connect_timeout``:
    # asyncpg's own default is 60 s, and an address that accepts but never answers (HAProxy
    # while no primary is up, a host gone without a reset) held each request that long
    connect_args: dict[str, Any] = {"server_settings": server_settings, "timeout": connect_timeout}
    if url.query.get("prepared_statement_cache_size") == "0":
        # PgBouncer in transaction mode (docs/replica.md): each transaction may run on another
        # server connection, so no statement is cached per connection, and the ones asyncpg
        # prepares get names no other client's can collide with
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        pool_pre_ping=pool_pre_ping,
        connect_args=connect_args,
    )
    if "statement_cache_size" in connect_args:
        _POOLED_PER_TRANSACTION.add(engine.sync_engine)
    _discard_closed_connections(engine)
    return engine


# engines behind PgBouncer in transaction mode: asyncpg prepares every statement (Parse) and
# then executes it (Bind) in separate exchanges, which outside a transaction PgBouncer may
# send to two different server connections ("prepared statement ... does not exist"), so
# their reads run in a (read-only) transaction instead of autocommit
_POOLED_PER_TRANSACTION: weakref.WeakSet[Any] = weakref.WeakSet()


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for reads that need no transaction: autocommit on PostgreSQL (each
    statement its only round trip), except behind PgBouncer in transaction mode (above)."""
    if engine.sync_engine in _POOLED_PER_TRANSACTION:
        return engine.execution_options(postgresql_readonly=True)
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _unique_statement_name() -> str:
    return f"__storefront_{uuid.uuid4().hex}__"


def _discard_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server has closed is replaced at checkout, with no round trip.

    Instead of a pre-ping (``pool_pre_ping``: on asyncpg a BEGIN, a ping and a ROLLBACK, three
    round trips per checkout) the driver's own view is asked: a backend that was terminated
    (``pg_terminate_backend``, a server restart, an idle timeout) closes its socket, the
    driver sees the end of the stream while the connection sits in the pool, and
    ``is_closed()`` says so. Raising ``DisconnectionError`` here makes the pool discard that
    connection and check out (or open) another, so the request never sees it.

    What the driver cannot know yet (a connection whose peer vanished without closing it)
    fails on its first statement; SQLAlchemy then recognises the disconnect and invalidates
    the whole pool, so that request fails once (503) and the next ones get fresh
    connections.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` transactions.

    pysqlite's own transaction handling starts transactions late and deferred, so two
    writers can deadlock on the lock upgrade; taking the write lock at BEGIN makes
    concurrent writers queue on the busy timeout instead (see docs/decisions).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a long read (an export) takes a deferred read snapshot that blocks no writer
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY_OPTION = "storefront_read_only"


def snapshot_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncSession:
    """A new session for one long, read-only pass over many rows (an export stream).

    PostgreSQL: a REPEATABLE READ, READ ONLY transaction, so every batch reads the same
    snapshot. SQLite: a deferred ``BEGIN`` (a WAL read snapshot) instead of the writers'
    ``BEGIN IMMEDIATE``, which would hold the database's write lock for the whole stream.
    The caller closes it (it holds a pooled connection until then).
    """
    engine = sessionmaker.kw["bind"]
    if engine.dialect.name == "postgresql":
        bind = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    else:
        bind = engine.execution_options(**{READ_ONLY_OPTION: True})
    return sessionmaker(bind=bind)


_READ_BINDS: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def read_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncSession:
    """A new session for a read that needs no transaction: one statement, or several that
    need no common snapshot, and never a write.

    PostgreSQL: autocommit, so the statement is the only round trip (a transaction would add
    a BEGIN and a COMMIT). SQLite: a deferred ``BEGIN`` (a WAL read snapshot) instead of the
    writers' ``BEGIN IMMEDIATE``. The caller closes it (``async with``).
    """
    engine = sessionmaker.kw["bind"]
    bind = _READ_BINDS.get(engine)
    if bind is None:
        if engine.dialect.name == "postgresql":
            bind = autocommit(engine)
        else:
            bind = engine.execution_options(**{READ_ONLY_OPTION: True})
        _READ_BINDS[engine] = bind
    return sessionmaker(bind=bind)


# The two kinds of session a piece of code may ask for (decision 0150), told apart by mypy:
# a ``ReadSession`` may be on the read replica (it never writes; what it reads may be a
# little behind, never behind this client's own writes), a ``WriteSession`` is always on the
# primary, in one transaction, and what it reads is current. Code that writes takes a
# ``WriteSession``; a ``ReadSession`` is never accepted where one is asked for.
ReadSession = NewType("ReadSession", AsyncSession)
WriteSession = NewType("WriteSession", AsyncSession)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


_T = TypeVar("_T")


def session_state(session: Session | AsyncSession, key: str, factory: Callable[[], _T]) -> _T:
    """The session's own state under ``key``, made by ``factory`` on first use: what lives
    exactly as long as the session or its transaction (after-commit actions, the audit
    buffer, unwrapped data keys). Nothing else travels on a session: the resources a piece of
    code needs are handed to it."""
    info = session.info
    if key not in info:
        info[key] = factory()
    return cast(_T, info[key])


def peek_session_state(session: Session | AsyncSession, key: str) -> Any:
    """The session's own state under ``key``, or None (nothing is made)."""
    return session.info.get(key)


def pop_session_state(session: Session | AsyncSession, key: str) -> Any:
    """Remove and return the session's own state under ``key`` (None if there was none)."""
    return session.info.pop(key, None)


AfterCommit = Callable[[], Awaitable[None]]


def _actions() -> list[AfterCommit]:
    return []


_PENDING = "storefront.after_commit.pending"
_COMMITTED = "storefront.after_commit.committed"
_ROLLBACK_PENDING = "storefront.after_rollback.pending"
_ROLLED_BACK = "storefront.after_rollback.rolled_back"
logger = logging.getLogger("storefront.db")


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` once the session's current transaction has committed.

    It never runs if that transaction rolls back. ``session_scope`` runs committed actions
    after its commit and before the response goes out (so before the client is told).
    """
    session_state(session, _PENDING, _actions).append(action)


def after_rollback(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` if the session's current (root) transaction ends without committing.

    ``session_scope`` runs it right after the rollback, when the session holds no
    transaction (and on SQLite no write lock), so the action may start a new one on the
    same session (the audit log writes failure events this way).
    """
    sync = session.sync_session
    if sync.get_transaction() is None:
        sync.begin()  # no I/O: so that even a rollback with no statement ends "a transaction"
    session_state(session, _ROLLBACK_PENDING, _actions).append(action)


@event.listens_for(Session, "after_commit")
def _promote_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy fires this for a released SAVEPOINT too: the root may still fail
    pop_session_state(session, _ROLLBACK_PENDING)
    pending = pop_session_state(session, _PENDING)
    if pending:
        session_state(session, _COMMITTED, _actions).extend(pending)


@event.listens_for(Session, "after_transaction_end")
def _drop_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    # a committed root transaction has already promoted its actions; anything still
    # pending when the root ends belongs to work that was rolled back
    if transaction.parent is None:
        pop_session_state(session, _PENDING)
        rolled_back = pop_session_state(session, _ROLLBACK_PENDING)
        if rolled_back:
            session_state(session, _ROLLED_BACK, _actions).extend(rolled_back)


async def run_after_commit(session: AsyncSession) -> None:
    """Run the actions of committed work (and the after-rollback actions of work that rolled
    back); a failing action is logged, never raised (the work is durable and must still be
    acknowledged, or the original error is the one to report)."""
    # an after-rollback action may commit new work with after-commit actions of its own
    while actions := [
        *(pop_session_state(session, _ROLLED_BACK) or ()),
        *(pop_session_state(session, _COMMITTED) or ()),
    ]:
        for action in actions:
            try:
                with anyio.CancelScope(shield=True):
                    await action()
            except Exception:
                logger.exception("an after-commit action failed")


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncGenerator[AsyncSession]:
    """One session, one transaction: commit on success, roll back on any error; then run
    the after-commit actions of whatever did commit."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
        finally:
            await run_after_commit(session)


async def lock_key(session: AsyncSession, key: str) -> None:
    """Serialise this transaction with every other one that locks ``key``, until it ends.

    For a limit counted over rows that may not exist yet (nothing to ``SELECT ... FOR
    UPDATE``): a transaction-scoped advisory lock on PostgreSQL. SQLite serialises write
    transactions already (``BEGIN IMMEDIATE``), so there it does nothing."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def dialect_insert(session: AsyncSession) -> Any:
    """The dialect's INSERT construct (both support ON CONFLICT and RETURNING)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
