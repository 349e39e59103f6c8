"""Async database access: engine factory, declarative base, sessions, dialect helpers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import uuid6
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import URL, make_url
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


def _ensure_sqlite_dir(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 5,
    pool_timeout: float = 5.0,
    pool_recycle: int = 1800,
    pool_pre_ping: bool = True,
    statement_timeout_ms: int = 0,
    echo: bool = False,
    application_name: str = "storefront",
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
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        pool_pre_ping=pool_pre_ping,
        connect_args={"server_settings": server_settings},
    )


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


def create_sessionmaker(
    engine: AsyncEngine, *, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """``info`` is copied into every session's ``Session.info`` (e.g. the response cache,
    so a domain service can schedule invalidations without new constructor arguments)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


AfterCommit = Callable[[], Awaitable[None]]
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
    session.info.setdefault(_PENDING, []).append(action)


def after_rollback(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` if the session's current (root) transaction ends without committing.

    ``session_scope`` runs it right after the rollback, when the session holds no
    transaction (and on SQLite no write lock), so the action may start a new one on the
    same session (the audit log writes failure events this way).
    """
    sync = session.sync_session
    if sync.get_transaction() is None:
        sync.begin()  # no I/O: so that even a rollback with no statement ends "a transaction"
    session.info.setdefault(_ROLLBACK_PENDING, []).append(action)


@event.listens_for(Session, "after_commit")
def _promote_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy fires this for a released SAVEPOINT too: the root may still fail
    session.info.pop(_ROLLBACK_PENDING, None)
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.info.setdefault(_COMMITTED, []).extend(pending)


@event.listens_for(Session, "after_transaction_end")
def _drop_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    # a committed root transaction has already promoted its actions; anything still
    # pending when the root ends belongs to work that was rolled back
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        rolled_back = session.info.pop(_ROLLBACK_PENDING, None)
        if rolled_back:
            session.info.setdefault(_ROLLED_BACK, []).extend(rolled_back)


async def run_after_commit(session: AsyncSession) -> None:
    """Run the actions of committed work (and the after-rollback actions of work that rolled
    back); a failing action is logged, never raised (the work is durable and must still be
    acknowledged, or the original error is the one to report)."""
    # an after-rollback action may commit new work with after-commit actions of its own
    while actions := [*session.info.pop(_ROLLED_BACK, []), *session.info.pop(_COMMITTED, [])]:
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


def dialect_insert(session: AsyncSession) -> Any:
    """The dialect's INSERT construct (both support ON CONFLICT and RETURNING)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
