"""The replica's lag as ReadRouter measures it, on a primary of its own: the shared test
primary is never idle (every test worker writes to it), and the defect this guards against
shows only on an idle one. A private PostgreSQL 15 primary and its streaming standby
(initdb + pg_basebackup -R, about 3 s) serve this module.

The defect: the lag in seconds was the age of the last replayed commit whenever the
standby's replay position differed from what it had received. The walwriter flushes complete
WAL pages, so an idle primary's flushed WAL can end in the head of a record whose tail is
still in its buffers (here an open transaction's); the standby cannot replay that head, so
its replay stayed a few bytes short of what it received, and a caught-up replica of a primary
with no commit for longer than the maximum lag was reported lagging ("lagging 24 bytes,
16.7 s" on a served instance) and reads fell back to the primary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from storefront.infra.replica import ReadRouter
from tests.conftest import require_or_skip

pytestmark = [pytest.mark.postgres, pytest.mark.replica]

MAX_LAG_SECONDS = 0.5


def _bindir() -> Path | None:
    for candidate in ("/usr/lib/postgresql/15/bin", os.environ.get("PG_BINDIR", "")):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Pair:
    primary: str  # asyncpg DSNs
    replica: str

    def url(self, dsn: str) -> str:
        return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    bindir = _bindir()
    require_or_skip(None if bindir is not None else "PostgreSQL 15's initdb is not installed")
    assert bindir is not None
    as_postgres: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="storefront-lag-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")

    def run(*args: str | Path) -> None:
        subprocess.run(  # noqa: S603 - fixed programs, our own arguments
            [*as_postgres, *map(str, args)], check=True, capture_output=True, timeout=120
        )

    primary_port, replica_port = _free_port(), _free_port()
    started: list[Path] = []
    try:
        run(bindir / "initdb", "-D", root / "p", "-A", "trust", "-U", "postgres", "-N")
        settings = (
            f"port = {primary_port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\nfsync = off\nwal_level = replica\n"
            "max_wal_senders = 4\nshared_buffers = 16MB\nmax_connections = 20\n"
        )
        with (root / "p" / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        with (root / "p" / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        run(bindir / "pg_ctl", "-D", root / "p", "-l", root / "p.log", "-w", "start")
        started.append(root / "p")
        run(
            bindir / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port),
            "-U", "postgres", "-D", root / "r", "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        with (root / "r" / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica_port}\n")
        run(bindir / "pg_ctl", "-D", root / "r", "-l", root / "r.log", "-w", "start")
        started.append(root / "r")
        yield Pair(
            f"postgresql://postgres@127.0.0.1:{primary_port}/postgres",
            f"postgresql://postgres@127.0.0.1:{replica_port}/postgres",
        )
    finally:
        for data in reversed(started):
            subprocess.run(  # noqa: S603
                [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def router(pair: Pair) -> AsyncIterator[ReadRouter]:
    primary = create_async_engine(pair.url(pair.primary))
    replica = create_async_engine(pair.url(pair.replica))
    reads = ReadRouter(
        async_sessionmaker(primary, expire_on_commit=False),
        replica,
        max_lag_seconds=MAX_LAG_SECONDS,
        interval=0,  # measured by the tests
    )
    await sql(pair.primary, "CREATE TABLE IF NOT EXISTS t (x int)")
    await caught_up(pair)
    try:
        yield reads
    finally:
        await sql(pair.replica, "SELECT pg_wal_replay_resume()")
        await primary.dispose()
        await replica.dispose()


async def sql(dsn: str, statement: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def caught_up(pair: Pair) -> None:
    target = await sql(pair.primary, "SELECT pg_current_wal_flush_lsn()::text")

    async def replayed() -> bool:
        return bool(
            await sql(pair.replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        )

    await until(replayed, "the private replica did not catch up")


async def last_commit_older_than_max_lag(pair: Pair) -> bool:
    return bool(
        await sql(
            pair.replica,
            "SELECT now() - pg_last_xact_replay_timestamp() "
            f"> interval '{MAX_LAG_SECONDS * 2} seconds'",
        )
    )


def reads(target: str) -> float:
    return REGISTRY.get_sample_value("storefront_db_reads_total", {"target": target}) or 0.0


async def assert_reads_use_the_replica(router: ReadRouter) -> None:
    before = reads("replica")
    session = await router.session()
    try:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is True
    finally:
        await session.close()
    assert reads("replica") == before + 1


async def test_an_idle_primary_whose_wal_ends_mid_record_leaves_the_replica_healthy(
    pair: Pair, router: ReadRouter
) -> None:
    await sql(pair.primary, "INSERT INTO t VALUES (0)")  # the last commit
    writer = await asyncpg.connect(pair.primary)
    try:
        # an open transaction's WAL: the walwriter flushes its complete pages, the record
        # that runs past the last of them stays half in the primary's buffers
        await writer.execute("BEGIN")

        async def ends_mid_record() -> bool:
            await writer.execute("INSERT INTO t SELECT generate_series(1, 500)")
            for _ in range(40):
                flushed, inserted = await writer.fetchrow(
                    "SELECT pg_current_wal_flush_lsn(), pg_current_wal_insert_lsn()"
                )
                received, replayed = await asyncpg_row(
                    pair.replica, "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()"
                )
                if received == flushed < inserted and replayed < received:
                    return True
                await asyncio.sleep(0.05)
            return False  # the flushed WAL ended on a record boundary: write more

        await until(ends_mid_record, "the primary's flushed WAL never ended mid-record")
        await until(lambda: last_commit_older_than_max_lag(pair), "the last commit stayed recent")

        state = await router.check()
        assert state is not None
        assert state.up, state
        assert (state.lag_bytes, state.lag_seconds) == (0, 0.0)
        assert router.status()["status"] == "up"
        await assert_reads_use_the_replica(router)
    finally:
        await writer.close()  # rolls the open transaction back


async def test_an_idle_primary_for_longer_than_the_max_lag_leaves_the_replica_healthy(
    pair: Pair, router: ReadRouter
) -> None:
    await sql(pair.primary, "INSERT INTO t VALUES (0)")
    await caught_up(pair)
    await until(lambda: last_commit_older_than_max_lag(pair), "the last commit stayed recent")
    state = await router.check()
    assert state is not None
    assert state.up, state
    assert state.lag_seconds == 0.0
    await assert_reads_use_the_replica(router)


async def test_paused_replay_with_a_write_is_lagging_and_reads_fall_back(
    pair: Pair, router: ReadRouter
) -> None:
    state = await router.check()
    assert state is not None
    assert state.up, state
    await sql(pair.replica, "SELECT pg_wal_replay_pause()")
    await sql(pair.primary, "INSERT INTO t VALUES (1)")

    async def lagging() -> bool:
        measured = await router.check()
        return measured is not None and not measured.up

    await until(lagging, "a paused replica with a commit to replay never lagged")
    state = router.state
    assert state is not None
    assert state.reason is not None
    assert state.reason.startswith("lagging"), state
    assert state.lag_seconds is not None
    assert state.lag_seconds > MAX_LAG_SECONDS
    assert state.lag_bytes is not None
    assert state.lag_bytes > 0
    before = reads("primary")
    session = await router.session()
    try:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
    finally:
        await session.close()
    assert reads("primary") == before + 1

    await sql(pair.replica, "SELECT pg_wal_replay_resume()")
    await caught_up(pair)
    state = await router.check()
    assert state is not None
    assert state.up, state
    await assert_reads_use_the_replica(router)


async def asyncpg_row(dsn: str, statement: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(statement)
    finally:
        await conn.close()
