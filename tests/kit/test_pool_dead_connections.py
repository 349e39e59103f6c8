"""The pool without a pre-ping: a connection the server closed is replaced at checkout.

Against the real PostgreSQL: the pooled connections' backends are ended with
``pg_terminate_backend`` (what a server restart or an idle-session timeout does to them),
then the pool is used again. No request may see a dead connection; and a connection whose
death the driver has not noticed yet fails one statement only, after which the pool heals.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from storefront.kit.db import create_engine, create_sessionmaker, session_scope
from storefront.settings import DatabaseSettings
from tests.conftest import _asyncpg_dsn

pytestmark = pytest.mark.postgres


def test_pre_ping_is_off_by_default() -> None:
    assert DatabaseSettings().pool_pre_ping is False


async def _backend_pids(engine: AsyncEngine, count: int) -> set[int]:
    """Check out ``count`` connections at once (so the pool holds that many), note their
    backends' pids, and return them all to the pool."""
    sessionmaker = create_sessionmaker(engine)
    sessions = [sessionmaker() for _ in range(count)]
    try:
        pids = {
            int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()) for s in sessions
        }
    finally:
        for s in sessions:
            await s.close()
    assert len(pids) == count
    return pids


async def _terminate(postgres_url: str, pids: set[int]) -> None:
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url))
    try:
        ended = await admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid = ANY($1::int[])) t",
            list(pids),
        )
    finally:
        await admin.close()
    assert ended == len(pids)


async def _one_read(engine: AsyncEngine) -> int:
    async for session in session_scope(create_sessionmaker(engine)):
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    raise AssertionError("unreachable")


def _count_statements(engine: AsyncEngine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    return seen


async def test_terminated_backends_are_replaced_at_checkout(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=3, max_overflow=0)
    try:
        old = await _backend_pids(engine, 3)
        await _terminate(postgres_url, old)
        await asyncio.sleep(0.2)  # the server's close reaches the idle pooled sockets
        # every one of the next reads succeeds, on a new backend
        new = {await _one_read(engine) for _ in range(6)}
        assert new.isdisjoint(old)
    finally:
        await engine.dispose()


async def test_no_round_trip_at_checkout(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=2, max_overflow=0)
    try:
        await _one_read(engine)  # the pool holds a connection now
        seen = _count_statements(engine)
        await _one_read(engine)
        # the read itself and nothing else (a pre-ping would run ";" in its own transaction)
        assert seen == ["SELECT pg_backend_pid()"]
    finally:
        await engine.dispose()


async def test_a_death_the_driver_missed_fails_once_then_the_pool_heals(
    postgres_url: str,
) -> None:
    """Backends ended while this process's event loop is busy: the pooled connections look
    alive at checkout (the driver has not read the end of the stream yet), the first
    statement fails, SQLAlchemy invalidates the pool, and the next reads succeed."""
    engine = create_engine(postgres_url, pool_size=3, max_overflow=0)
    try:
        old = await _backend_pids(engine, 3)
        # ended from another thread while this loop is blocked: nothing here can notice
        ender = threading.Thread(target=asyncio.run, args=(_terminate(postgres_url, old),))
        ender.start()
        ender.join()
        failed: list[DBAPIError] = []
        pids: set[int] = set()
        for _ in range(6):
            try:
                pids.add(await _one_read(engine))
            except DBAPIError as exc:
                failed.append(exc)
        assert len(failed) == 1
        assert failed[0].connection_invalidated
        assert len(pids) >= 1
        assert pids.isdisjoint(old)
    finally:
        await engine.dispose()
