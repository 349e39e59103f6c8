"""`storefront audit verify` as an operator runs it: an intact chain, then hand-edited rows.

On PostgreSQL the table's trigger refuses UPDATE and DELETE to everyone who has not switched
triggers off, so the "attacker" here is a superuser who does (``session_replication_role =
replica``): exactly the edit the hash chain exists to expose.
"""

from __future__ import annotations

import subprocess
import uuid

import anyio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storefront.auditlog import AuditEvent, record
from storefront.auditlog.chain import entry_hash
from storefront.kit.db import create_engine, create_sessionmaker
from tests.support.servers import CLI, run_cli
from tests.support.servers import cli_env as _env


def _verify(database_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [*CLI, "audit", "verify", *extra],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _tamper(database_url: str, *statements: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _fill(database_url: str, transactions: int, per_transaction: int) -> None:
    engine = create_engine(database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        for t in range(transactions):
            async with sessionmaker() as session, session.begin():
                for i in range(per_transaction):
                    record(
                        session,
                        "test.recorded",
                        object_type="test",
                        object_id=uuid.uuid4(),
                        shop_id=uuid.uuid4() if i % 2 else None,
                        details={"transaction": t, "index": i, "even": i % 2 == 0},
                    )
    finally:
        await engine.dispose()


async def _row(conn: AsyncConnection, seq: int) -> dict[str, object]:
    table = AuditEvent.__table__
    result = await conn.execute(select(table).where(table.c.seq == seq))
    return dict(result.mappings().one())


async def test_verify_names_the_first_broken_link(migrated_database: str) -> None:
    await _fill(migrated_database, transactions=4, per_transaction=5)  # 20 entries

    ok = await anyio.to_thread.run_sync(lambda: _verify(migrated_database, "--batch-size", "3"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 20 entries" in ok.stdout

    # 1. an edited detail: that entry's hash no longer matches its contents
    await _tamper(
        migrated_database,
        "UPDATE audit_events SET action = 'test.innocent' WHERE seq = 7",
        "UPDATE audit_events SET action = 'test.innocent' WHERE seq = 12",
    )
    broken = await anyio.to_thread.run_sync(lambda: _verify(migrated_database, "--batch-size", "3"))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "BROKEN at entry 7: hash mismatch" in broken.stdout
    assert "6 entries before it verified" in broken.stdout


async def test_a_recomputed_hash_breaks_the_next_link_and_a_deletion_is_a_gap(
    migrated_database: str,
) -> None:
    await _fill(migrated_database, transactions=2, per_transaction=5)  # 10 entries

    # an editor who also recomputes the edited entry's hash: the *next* entry's prev_hash
    # still names the old one
    engine = create_engine(migrated_database)
    try:
        async with engine.connect() as conn:
            row = await _row(conn, 4)
    finally:
        await engine.dispose()
    forged = {**row, "object_id": "forged"}
    await _tamper(
        migrated_database,
        f"UPDATE audit_events SET object_id = 'forged', hash = '{entry_hash(forged)}' "  # noqa: S608
        "WHERE seq = 4",
    )
    broken = await anyio.to_thread.run_sync(lambda: _verify(migrated_database))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "BROKEN at entry 5: prev link mismatch" in broken.stdout

    # a deleted entry is a gap, reported before anything after it
    await _tamper(migrated_database, "DELETE FROM audit_events WHERE seq = 2")
    gap = await anyio.to_thread.run_sync(lambda: _verify(migrated_database))
    assert gap.returncode == 1, gap.stdout + gap.stderr
    assert "BROKEN at entry 2: gap" in gap.stdout
    assert "1 entries before it verified" in gap.stdout


async def test_an_empty_log_verifies(migrated_database: str) -> None:
    ok = await anyio.to_thread.run_sync(lambda: _verify(migrated_database))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 0 entries" in ok.stdout


async def test_keys_rotate_leaves_an_entry(migrated_database: str) -> None:
    await anyio.to_thread.run_sync(lambda: run_cli(["keys", "rotate"], _env(migrated_database)))
    engine = create_engine(migrated_database)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT actor_type, action, object_type FROM audit_events"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [("system", "keys.signing_rotated", "signing_key")]
    ok = await anyio.to_thread.run_sync(lambda: _verify(migrated_database))
    assert "OK: 1 entries" in ok.stdout
