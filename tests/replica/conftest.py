"""The streaming replica the replica tests read from: deploy/local/pg-replica's cluster
(127.0.0.1:5433 unless STOREFRONT_TEST_REPLICA_PORT says otherwise), a real standby of the
test primary. Under CI=true a missing replica fails these tests instead of skipping them.

The replica is one server shared by every test worker, and these tests pause its replay and
stop it: an exclusive file lock runs them one at a time across workers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from storefront.settings import Settings
from tests.conftest import make_settings, require_or_skip
from tests.support.apps import running_app

REPLICA_PORT = int(os.environ.get("STOREFRONT_TEST_REPLICA_PORT", "5433"))
REPLICA_CLUSTER = os.environ.get("STOREFRONT_TEST_REPLICA_CLUSTER", "15 replica").split()
LOCK_FILE = Path("/tmp/storefront-test-replica.lock")  # noqa: S108 - a lock, no data


def dsn(url: str, *, port: int | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if port is not None:
        parsed = parsed.set(port=port)
    return parsed.render_as_string(hide_password=False)


async def _replica_reason() -> str | None:
    try:
        conn = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{REPLICA_PORT}/postgres", timeout=5
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return (
            f"no streaming replica on 127.0.0.1:{REPLICA_PORT} ({exc!r}); "
            "start one with deploy/local/pg-replica up"
        )
    try:
        if not await conn.fetchval("SELECT pg_is_in_recovery()"):
            return f"the server on port {REPLICA_PORT} is not a standby"
    finally:
        await conn.close()
    return None


@pytest.fixture
def replica_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def caught_up(primary_url: str, replica_url: str, within: float = 30.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far (and
    resume a replay a failed test left paused)."""
    primary = await asyncpg.connect(dsn(primary_url))
    try:
        # the insert position: the test databases commit with synchronous_commit=off, so a
        # commit can sit in the WAL buffers past pg_current_wal_lsn() (the write position)
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
    finally:
        await primary.close()
    deadline = time.monotonic() + within
    while True:
        try:
            replica = await asyncpg.connect(dsn(replica_url), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            # the test database's creation not replayed yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        try:
            if await replica.fetchval("SELECT pg_is_wal_replay_paused()"):
                await replica.execute("SELECT pg_wal_replay_resume()")
            done = await replica.fetchval(
                "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0", target
            )
        finally:
            await replica.close()
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not catch up with the primary")
        await asyncio.sleep(0.05)


@pytest.fixture
async def replica_url(postgres_url: str, replica_lock: None) -> AsyncIterator[str]:
    """The test database's URL on the replica, once the replica has replayed its creation
    and migrations; replay is running again afterwards whatever the test did."""
    require_or_skip(await _replica_reason())
    url = make_url(postgres_url).set(port=REPLICA_PORT).render_as_string(hide_password=False)
    await caught_up(postgres_url, url)
    try:
        yield url
    finally:
        await replica_sql(url, "SELECT pg_wal_replay_resume()", tolerate_down=True)


async def replica_sql(url: str, sql: str, *, tolerate_down: bool = False) -> Any:
    try:
        conn = await asyncpg.connect(dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        if tolerate_down:
            return None
        raise
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def replica_settings(postgres_url: str, replica_url: str, **database: Any) -> Settings:
    return make_settings(
        postgres_url,
        database_replica_url=replica_url,
        database={
            "pool_size": 20,
            "max_overflow": 10,
            "pool_timeout_seconds": 30,
            # measured on demand by each test (check()), not on a schedule it races with
            "replica_check_interval_seconds": 0,
            **database,
        },
        rate_limit_enabled=False,  # a test's readers send hundreds of requests a second
    )


@pytest.fixture
async def replica_app(postgres_url: str, replica_url: str) -> AsyncIterator[FastAPI]:
    async with running_app(replica_settings(postgres_url, replica_url)) as app:
        yield app
