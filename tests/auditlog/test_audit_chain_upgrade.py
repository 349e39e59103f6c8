"""Migration 0009 on an audit log with version-1 entries (SQLite and PostgreSQL).

The old entries keep their hashes (a head hash noted before the upgrade still verifies), get
a salt and a commitment to their address, and one ``audit.chain_upgraded`` checkpoint
covers them; erasure then reaches them through the trigger and ``storefront audit verify``
still passes, while an edit of an erased old entry is caught at the checkpoint.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from storefront.auditlog import erase_personal_fields, record
from storefront.auditlog.chain import GENESIS_HASH, UPGRADE_ACTION, entry_hash
from storefront.kit.db import UTCDateTime, create_engine, create_sessionmaker, utcnow
from tests.support.servers import CLI
from tests.support.servers import cli_env as _env

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
ALICE, BOB = uuid.uuid4(), uuid.uuid4()
ALICE_IP, BOB_IP = "203.0.113.10", "198.51.100.20"

# the table as migration 0004 made it (before 0009)
audit_v1 = sa.table(
    "audit_events",
    sa.column("seq", sa.BigInteger()),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("actor_type", sa.String()),
    sa.column("actor_id", sa.Uuid()),
    sa.column("action", sa.String()),
    sa.column("object_type", sa.String()),
    sa.column("object_id", sa.String()),
    sa.column("shop_id", sa.Uuid()),
    sa.column("client_address", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("trace_id", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["configure_logging"] = False
    cfg.attributes["database_url"] = url
    return cfg


def _legacy_rows() -> list[dict[str, Any]]:
    """Five version-1 entries, hashed as the code before 0009 hashed them."""
    start = utcnow() - timedelta(days=3)
    specs = [
        (ALICE, ALICE_IP, "login.succeeded"),
        (BOB, BOB_IP, "login.succeeded"),
        (ALICE, ALICE_IP, "order.placed"),
        (None, None, "keys.signing_rotated"),
        (ALICE, ALICE_IP, "order.cancelled"),
    ]
    rows, prev = [], GENESIS_HASH
    for i, (actor, address, action) in enumerate(specs, start=1):
        row: dict[str, Any] = {
            "seq": i,
            "occurred_at": start + timedelta(minutes=i),
            "actor_type": "user" if actor else "system",
            "actor_id": actor,
            "action": action,
            "object_type": "test",
            "object_id": str(i),
            "shop_id": None,
            "client_address": address,
            "request_id": uuid.uuid4().hex if actor else None,
            "trace_id": None,
            "details": {"index": i},
            "prev_hash": prev,
        }
        row["hash"] = prev = entry_hash(row)  # no chain_version: version 1
        rows.append(row)
    return rows


def _verify(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [*CLI, "audit", "verify", "--batch-size", "2"],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _execute(url: str, *statements: Any, replica: bool = False) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if replica and conn.dialect.name == "postgresql":
                await conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            result = None
            for statement in statements:
                result = await conn.execute(statement)
            return [dict(r._mapping) for r in result] if result and result.returns_rows else []
    finally:
        await engine.dispose()


async def _table(url: str) -> list[dict[str, Any]]:
    return await _execute(url, sa.text("SELECT * FROM audit_events ORDER BY seq"))


async def test_old_entries_keep_their_hashes_and_become_erasable(empty_database: str) -> None:
    cfg = _config(empty_database)
    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "0008"))
    legacy = _legacy_rows()
    await _execute(empty_database, audit_v1.insert().values(legacy))

    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "head"))
    rows = await _table(empty_database)
    assert [r["hash"] for r in rows[:5]] == [r["hash"] for r in legacy]  # unchanged
    assert [r["chain_version"] for r in rows] == [1, 1, 1, 1, 1, 2]
    with_address = [r for r in rows[:5] if r["client_address"]]
    assert all(r["personal_salt"] and r["personal_commitment"] for r in with_address)
    assert rows[3]["personal_commitment"] is None  # no address, nothing to commit to
    checkpoint = rows[5]
    assert checkpoint["action"] == UPGRADE_ACTION
    assert checkpoint["prev_hash"] == legacy[-1]["hash"]
    ok = await anyio.to_thread.run_sync(lambda: _verify(empty_database))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 6 entries" in ok.stdout

    # erasure of Alice, through the application's ordinary session (the trigger is on),
    # then a new entry on top
    engine = create_engine(empty_database)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            assert await erase_personal_fields(session, ALICE) == 3
            record(session, "test.after", object_type="test", client_address=BOB_IP)
    finally:
        await engine.dispose()
    rows = await _table(empty_database)
    alice = [r for r in rows if r["actor_id"] in (ALICE, str(ALICE), ALICE.hex)]
    assert len(alice) == 3
    assert all(r["client_address"] is None and r["personal_salt"] is None for r in alice)
    assert all(r["personal_commitment"] for r in alice)
    assert ALICE_IP not in {r["client_address"] for r in rows}
    assert BOB_IP in {r["client_address"] for r in rows[:5]}
    ok = await anyio.to_thread.run_sync(lambda: _verify(empty_database))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 7 entries" in ok.stdout

    # an erased old entry can no longer be checked against its own hash: the checkpoint's
    # digest catches an edit of it
    await _execute(
        empty_database,
        sa.text("UPDATE audit_events SET action = 'order.innocent' WHERE seq = 3"),
        replica=True,
    )
    broken = await anyio.to_thread.run_sync(lambda: _verify(empty_database))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "BROKEN at entry 6: legacy digest mismatch" in broken.stdout

    # a not-erased old entry is still checked against its own hash
    await _execute(
        empty_database,
        sa.text("UPDATE audit_events SET action = 'order.placed' WHERE seq = 3"),
        sa.text("UPDATE audit_events SET object_id = 'forged' WHERE seq = 2"),
        replica=True,
    )
    broken = await anyio.to_thread.run_sync(lambda: _verify(empty_database))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "BROKEN at entry 2: hash mismatch" in broken.stdout


async def test_an_empty_log_gets_no_checkpoint(empty_database: str) -> None:
    cfg = _config(empty_database)
    await anyio.to_thread.run_sync(lambda: command.upgrade(cfg, "head"))
    assert await _table(empty_database) == []
