"""The cross-region failover drill (bench/crossregion.py, `make crossregion-drill`) on a tiny
run with real PostgreSQL 15 clusters: region B is promoted by the runbook, and the orders it
reports lost are exactly the acknowledged ones the promoted database lacks.

The run: a 1 s one-way link (so a loss is certain: about 40 orders are on the wire when region
A dies) and a 10 s apply delay on region B, longer than the whole load: at the loss region B
has replayed none of the orders, and only if the promotion replays everything region B had
received (PostgreSQL ends the apply delay when promotion is requested; the runbook also lifts
it) are the lost orders just those of the last second. About 40 s, most of it
``storefront migrate``.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bench import crossregion
from tests.conftest import require_or_skip

LINK_MS = 1000.0
APPLY_S = 10.0
SECONDS = 5.0
RATE = 40.0


def _three_free_ports() -> int:
    for _ in range(200):
        base = random.randint(20000, 60000)
        ok = True
        for port in (base, base + 1, base + 2):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no three consecutive free ports")


def _missing() -> str | None:
    if not (crossregion.BINDIR / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({crossregion.BINDIR})"
    if os.geteuid() != 0:
        return "the drill starts PostgreSQL as the postgres user: run as root"
    if not (crossregion.REPO / ".venv" / "bin" / "storefront").exists():
        return "the project is not installed (make install)"
    return None


@pytest.mark.postgres
async def test_the_promoted_region_has_every_acknowledged_order_but_the_last_on_the_wire() -> None:
    require_or_skip(_missing())
    base = _three_free_ports()
    run = crossregion.drill(base, LINK_MS, APPLY_S, SECONDS, RATE, log=lambda _msg: None)
    async with run as (clusters, result):
        assert result.acknowledged >= RATE * SECONDS * 0.5, result.acknowledged
        # region B is a primary now, and takes writes
        conn = await asyncpg.connect(clusters.replica.dsn)
        try:
            assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
            await conn.execute("CREATE TEMP TABLE probe (x int)")
            shop = await conn.fetchval(
                "SELECT id FROM shops WHERE slug LIKE 'crossregion-%'"
            )  # fmt: skip
            present = {
                str(r["id"])
                for r in await conn.fetch("SELECT id FROM orders WHERE shop_id = $1", shop)
            }
        finally:
            await conn.close()
        acked = set(result.ledger)
        assert len(acked) == result.acknowledged
        # the count the drill reports is the count the database shows
        assert set(result.lost) == acked - present
        assert result.lost_count == len(acked - present)
        # a 1 s link: the orders acknowledged in about the last second were on the wire
        assert result.lost_count > 0
        assert result.lost_window_s is not None
        # ... and only those: the WAL region B had received was replayed, apply delay or not
        # (a promotion at the replayed position would lose every order of the 5 s load)
        assert result.lost_window_s < LINK_MS / 1000 + 3.0, result.lost_window_s
        assert all(result.ledger[k] < LINK_MS / 1000 + 3.0 for k in result.lost)
        assert result.lost_count < result.acknowledged / 2
        # nothing appeared that was never attempted
        assert result.unexpected == 0
        # the apply delay held replay back until the runbook lifted it
        assert result.promotion.replayed_lsn_before != result.promotion.received_lsn
        assert [name for name, _ in result.promotion.steps] == [
            "state read",
            "received WAL replayed",
            "promoted",
            "write accepted",
        ]
        root = clusters.root
    assert not await asyncio.to_thread(Path(root).exists)
