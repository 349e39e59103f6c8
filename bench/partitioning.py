"""One shop's recent orders on millions of orders, with and without partitioning by shop
(decision 0169, docs/scaling.md). Not part of the test run: `make bench-partitioning`.

It starts a scratch PostgreSQL 15 cluster of its own (initdb in a temporary directory, fsync
off, on a free loopback port: gigabytes of WAL must not go through the shared test primary
and its streaming replica), or uses ``--dsn``. Three layouts of the same rows:

- ``orders_plain``: one table, primary key ``id``, index ``(shop_id, id)`` (today's schema);
- ``orders_hash``: ``PARTITION BY HASH (shop_id)``, ``--partitions`` partitions, primary key
  ``(shop_id, id)`` (the schema decision 0169 moves to);
- ``orders_range``: ``PARTITION BY RANGE (created_at)``, one partition a month, index
  ``(shop_id, id)`` in each (the alternative the decision rejects for orders).

Ids are UUIDv7-shaped (time first) as ``kit.db.new_id`` makes them, so "recent" is
``ORDER BY id DESC``. Each query runs for the same random shops on each layout, interleaved
in rounds, warm cache; medians and the ratios go to ``bench/reports/DATE-partitioning.md``
with the EXPLAIN output that shows the pruning.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

REPORTS = Path(__file__).parent / "reports"
LAYOUTS = ("orders_plain", "orders_hash", "orders_range")

COLUMNS = """
    id uuid NOT NULL,
    shop_id uuid NOT NULL,
    customer_id uuid,
    status varchar(16) NOT NULL,
    total_cents bigint NOT NULL,
    created_at timestamptz NOT NULL
"""

QUERIES = {
    # the staff order listing's first page: one shop's 20 most recent orders
    "recent 20": (
        "SELECT id, status, total_cents, created_at FROM {t} "
        "WHERE shop_id = $1 ORDER BY id DESC LIMIT 20"
    ),
    # one shop's orders of the last 30 days (a dashboard figure): a range of its index
    "30-day total": (
        "SELECT count(*), sum(total_cents) FROM {t} WHERE shop_id = $1 AND created_at >= $2"
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def scratch_cluster() -> Iterator[str]:
    bindir = Path("/usr/lib/postgresql/15/bin")
    if not (bindir / "initdb").exists():
        sys.exit("PostgreSQL 15 (initdb) is not installed; pass --dsn to use a server")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="storefront-partitioning-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()

    def run(*args: str | Path) -> None:
        subprocess.run([*as_postgres, *map(str, args)], check=True, capture_output=True)  # noqa: S603

    try:
        run(bindir / "initdb", "-D", root / "data", "-A", "trust", "-U", "postgres", "-N")
        with (root / "data" / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{root}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nwal_level = minimal\n"
                "max_wal_senders = 0\nmax_wal_size = 4GB\nshared_buffers = 256MB\n"
                "maintenance_work_mem = 256MB\n"
            )
        run(bindir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(bindir / "pg_ctl", "-D", root / "data", "-m", "fast", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def load(
    conn: asyncpg.Connection, orders: int, shops: int, partitions: int
) -> dict[str, float]:
    """The three layouts, filled with the same rows; seconds each step took."""
    took: dict[str, float] = {}
    for table in LAYOUTS:
        await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    await conn.execute(f"CREATE TABLE orders_plain ({COLUMNS})")
    await conn.execute(f"CREATE TABLE orders_hash ({COLUMNS}) PARTITION BY HASH (shop_id)")
    for i in range(partitions):
        await conn.execute(
            f"CREATE TABLE orders_hash_{i:02d} PARTITION OF orders_hash "
            f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
        )
    await conn.execute(f"CREATE TABLE orders_range ({COLUMNS}) PARTITION BY RANGE (created_at)")
    # a year of orders, the newest now; shops' sizes skewed (a few big ones, a long tail)
    started = time.perf_counter()
    await conn.execute(
        """
        INSERT INTO orders_plain
        SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
                || substr(md5(i::text), 1, 19))::uuid,
               md5('shop' || (floor(power(random(), 2.0) * $2))::int)::uuid,
               md5('customer' || (i % 200000))::uuid,
               (ARRAY['pending', 'paid', 'fulfilled', 'cancelled'])[1 + i % 4],
               100 + (i::bigint * 7919) % 50000,
               ts
        FROM (SELECT i, now() - interval '365 days' * (1 - i::float8 / $1) AS ts
              FROM generate_series(1, $1) AS i) AS g
        """,
        orders,
        shops,
    )
    took["generate plain"] = time.perf_counter() - started
    low = await conn.fetchval("SELECT date_trunc('month', min(created_at)) FROM orders_plain")
    month = low
    n = 0
    while month <= datetime.now(UTC):
        await conn.execute(
            f"CREATE TABLE orders_range_{n:02d} PARTITION OF orders_range "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{month.isoformat()}'::timestamptz "
            "+ interval '1 month')"
        )
        month = await conn.fetchval("SELECT $1::timestamptz + interval '1 month'", month)
        n += 1
    for table in ("orders_hash", "orders_range"):
        started = time.perf_counter()
        await conn.execute(f"INSERT INTO {table} SELECT * FROM orders_plain")  # noqa: S608
        took[f"copy {table}"] = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute("ALTER TABLE orders_plain ADD PRIMARY KEY (id)")
    await conn.execute("CREATE INDEX ON orders_plain (shop_id, id)")
    await conn.execute("ALTER TABLE orders_hash ADD PRIMARY KEY (shop_id, id)")
    await conn.execute("CREATE INDEX ON orders_range (shop_id, id)")
    await conn.execute("CREATE INDEX ON orders_range (shop_id, created_at)")
    await conn.execute("CREATE INDEX ON orders_plain (shop_id, created_at)")
    await conn.execute("CREATE INDEX ON orders_hash (shop_id, created_at)")
    took["indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute("VACUUM ANALYZE")
    took["vacuum analyze"] = time.perf_counter() - started
    return took


async def measure(
    conn: asyncpg.Connection, shops: list[str], rounds: int
) -> dict[tuple[str, str], list[float]]:
    since = await conn.fetchval("SELECT now() - interval '30 days'")
    samples: dict[tuple[str, str], list[float]] = {}
    statements = {
        (name, t): await conn.prepare(sql.format(t=t))
        for name, sql in QUERIES.items()
        for t in LAYOUTS
    }
    for _ in range(rounds):
        for (name, table), statement in statements.items():
            args = (since,) if "$2" in QUERIES[name] else ()
            for shop in shops:  # warm-up pass then the timed one
                await statement.fetch(shop, *args)
            for shop in shops:
                started = time.perf_counter()
                await statement.fetch(shop, *args)
                samples.setdefault((name, table), []).append(time.perf_counter() - started)
    return samples


async def explain(conn: asyncpg.Connection, shop: str) -> dict[str, str]:
    out: dict[str, str] = {}
    since = await conn.fetchval("SELECT now() - interval '30 days'")
    for table in LAYOUTS:
        for name, sql in QUERIES.items():
            query = sql.format(t=table).replace("$1", f"'{shop}'")
            query = query.replace("$2", f"'{since.isoformat()}'")
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {query}")
            out[f"{name} on {table}"] = "\n".join(r[0] for r in rows)
    return out


async def sizes(conn: asyncpg.Connection) -> dict[str, str]:
    out = {}
    for table in LAYOUTS:
        out[table] = await conn.fetchval(
            "SELECT pg_size_pretty(coalesce(sum(pg_total_relation_size(relid)), "
            "pg_total_relation_size($1::regclass))) FROM pg_partition_tree($1::regclass)",
            table,
        )
    return out


async def main_async(args: argparse.Namespace, dsn: str) -> Path:
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        await conn.execute("SET max_parallel_workers_per_gather = 0")  # one core per query
        took = await load(conn, args.orders, args.shops, args.partitions)
        counts = await conn.fetch(
            "SELECT shop_id::text, count(*) AS n FROM orders_plain GROUP BY 1 ORDER BY 2 DESC"
        )
        rng = random.Random(args.seed)  # noqa: S311 - sampling, not secrets
        picked = [r["shop_id"] for r in rng.sample(list(counts), min(args.sample, len(counts)))]
        samples = await measure(conn, picked, args.rounds)
        plans = await explain(conn, counts[len(counts) // 2]["shop_id"])
        sizes_ = await sizes(conn)
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return write_report(args, took, counts, samples, plans, sizes_, version)


def write_report(
    args: argparse.Namespace,
    took: dict[str, float],
    counts: list[asyncpg.Record],
    samples: dict[tuple[str, str], list[float]],
    plans: dict[str, str],
    sizes_: dict[str, str],
    version: str,
) -> Path:
    now = datetime.now(UTC)
    per_shop = [r["n"] for r in counts]
    load_avg = os.getloadavg()
    lines = [
        f"# Partitioning: one shop's recent orders on {args.orders:,} orders",
        "",
        f"{now:%Y-%m-%d %H:%M} UTC, `python -m bench.partitioning` "
        f"(--orders {args.orders} --shops {args.shops} --partitions {args.partitions} "
        f"--rounds {args.rounds} --sample {args.sample}), PostgreSQL {version} scratch cluster "
        f"(shared_buffers 256MB, warm cache, no parallel workers), "
        f"load average at the end {load_avg[0]:.1f} on {os.cpu_count()} cores "
        "(a shared machine: read the ratios, not the absolute times). Decision 0169.",
        "",
        f"{len(per_shop)} shops with orders: largest {per_shop[0]:,}, median "
        f"{per_shop[len(per_shop) // 2]:,}, smallest {per_shop[-1]:,} orders. "
        f"Sizes with indexes: " + ", ".join(f"{t} {s}" for t, s in sizes_.items()) + ".",
        "",
        "| query | layout | median ms | p90 ms | plain / this (median) |",
        "|---|---|---|---|---|",
    ]
    for name in QUERIES:
        base = statistics.median(samples[(name, "orders_plain")])
        for table in LAYOUTS:
            xs = sorted(samples[(name, table)])
            med = statistics.median(xs)
            p90 = xs[int(len(xs) * 0.9)]
            lines.append(
                f"| {name} | {table} | {med * 1000:.3f} | {p90 * 1000:.3f} | {base / med:.2f} |"
            )
    lines += ["", "Set-up: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + ".", ""]
    lines += ["## Plans (EXPLAIN ANALYZE, BUFFERS; a median-sized shop)", ""]
    for name, plan in plans.items():
        lines += [f"**{name}**", "", "```", plan, "```", ""]
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"{now:%Y-%m-%d-%H%M}-partitioning.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a PostgreSQL server to use (default: a scratch cluster)")
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--shops", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample", type=int, default=100, help="shops queried per round")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    if args.dsn:
        path = asyncio.run(main_async(args, args.dsn))
    else:
        with scratch_cluster() as dsn:
            path = asyncio.run(main_async(args, dsn))
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
