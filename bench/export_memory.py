"""Benchmark: memory of a streaming order export, side by side with a buffered one.

Target: the server's RSS grows by less than 50 MB while it exports 1,000,000 orders.

What it does, on the local PostgreSQL (STOREFRONT_BENCH_POSTGRES_URL, default the trust-auth
server on 127.0.0.1) in a database of its own that it drops afterwards:

1. migrates the database, starts `storefront serve` (one uvicorn worker) on a free loopback
   port, signs a staff user up and creates a shop through the API;
2. loads N orders (3 lines each) into that shop with COPY;
3. exports them with `Accept: application/x-ndjson` and `text/csv`, reading the stream as a
   client would, while sampling the server process's RSS every 20 ms: baseline before the
   request, peak during it, growth = peak - baseline; also time to first byte, duration,
   orders/s and MB/s;
4. for comparison, the same export written the naive way (load every order with its lines
   through the ORM, serialize one JSON document) in a separate process, on a tenth of the
   orders, with the same RSS sampling;
5. writes a dated Markdown report under bench/reports/.

Run: `.venv/bin/python bench/export_memory.py` (or `make bench-export`); `--orders 100000`
for a quicker run. Loopback only; every process it starts is stopped.
"""

# a script, not library code: asserts, fixed passwords and blocking process control are fine
# ruff: noqa: S101, S105, S603, PT018, ASYNC220, ASYNC221, E501

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx2
import psutil
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "bench" / "reports"
ADMIN_URL = os.environ.get(
    "STOREFRONT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TARGET_MB = 50.0
LINES = 3
PASSWORD = "bench-password-0123456789"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssSampler:
    """Samples a process's resident set size (psutil) in a thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@dataclass
class Result:
    label: str
    orders: int
    baseline_mb: float
    peak_mb: float
    first_byte_s: float | None
    seconds: float
    megabytes: float

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb


def _records(
    shop_id: uuid.UUID, customer_id: uuid.UUID, n: int, seal: Callable[[uuid.UUID, str], str]
) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    import uuid6

    now = datetime.now(UTC)
    chunk = 20_000
    for start in range(0, n, chunk):
        orders: list[tuple[object, ...]] = []
        lines: list[tuple[object, ...]] = []
        for i in range(start, min(n, start + chunk)):
            order_id = uuid.UUID(bytes=uuid6.uuid7().bytes)
            at = now + timedelta(microseconds=i)
            address = seal(
                order_id,
                json.dumps(
                    {
                        "name": f"Customer {i}",
                        "line1": f"{i} Long Road",
                        "line2": None,
                        "city": "Bern",
                        "postal_code": "3000",
                        "country": "CH",
                        "phone": None,
                    },
                    separators=(",", ":"),
                ),
            )
            orders.append(
                (order_id, shop_id, customer_id, "pending", "EUR", LINES * 1250, address, 1, at, at)
            )
            for position in range(LINES):
                lines.append(
                    (
                        uuid.UUID(bytes=uuid6.uuid7().bytes),
                        order_id,
                        shop_id,
                        position,
                        uuid.uuid4(),
                        f"SKU-{position:04d}",
                        f"Product number {position}, with a name of typical length",
                        1250,
                        1,
                        1250,
                    )
                )
        yield orders, lines


async def load_orders(dsn: str, shop_id: str, customer_id: str, n: int) -> float:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from storefront.orders.sealing import address_aad
    from storefront.settings import Settings
    from storefront.vault.config import build_vault
    from storefront.vault.envelope import seal_value, unwrap_data_key

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        # addresses are sealed with the customer's data key, as the application seals them
        # (the server derives its development keys from the same environment)
        vault = build_vault(Settings(environment="development"))
        customer = uuid.UUID(customer_id)
        row = await conn.fetchrow(
            "SELECT key_version, wrapped_key, master_version FROM data_keys WHERE subject_id = $1",
            customer,
        )
        key = AESGCM(
            unwrap_data_key(vault.provider, customer, row["wrapped_key"], row["master_version"])
        )

        def seal(order_id: uuid.UUID, address: str) -> str:
            return seal_value(key, row["key_version"], address, address_aad(order_id))

        for orders, lines in _records(uuid.UUID(shop_id), customer, n, seal):
            await conn.copy_records_to_table(
                "orders",
                records=orders,
                columns=[
                    "id",
                    "shop_id",
                    "customer_id",
                    "status",
                    "currency",
                    "total_cents",
                    "shipping_address_sealed",
                    "version",
                    "created_at",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "order_lines",
                records=lines,
                columns=[
                    "id",
                    "order_id",
                    "shop_id",
                    "position",
                    "product_id",
                    "sku",
                    "name",
                    "unit_price_cents",
                    "quantity",
                    "line_total_cents",
                ],
            )
        await conn.execute("ANALYZE orders; ANALYZE order_lines")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def export(base: str, token: str, shop_id: str, media: str, pid: int, expect: int) -> Result:
    sampler = RssSampler(pid)
    baseline = sampler.rss()
    count = 0
    size = 0
    first: float | None = None
    started = time.perf_counter()
    with sampler:
        async with (
            httpx2.AsyncClient(base_url=base, timeout=600) as client,
            client.stream(
                "GET",
                f"/api/v1/shops/{shop_id}/orders",
                headers={"Authorization": f"Bearer {token}", "Accept": media},
            ) as r,
        ):
            r.raise_for_status()
            async for chunk in r.aiter_bytes():
                if first is None:
                    first = time.perf_counter() - started
                size += len(chunk)
                count += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    rows = count if media.endswith("ndjson") else (count - 1) // LINES  # CSV: header, 3 rows each
    if rows != expect:
        raise SystemExit(f"{media}: exported {rows} orders, expected {expect}")
    return Result(
        media, expect, baseline / 2**20, sampler.peak / 2**20, first, seconds, size / 2**20
    )


NAIVE = r"""
import asyncio, sys, uuid
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from storefront.kit.db import create_engine, create_sessionmaker
from storefront.orders.models import Order
from storefront.orders.schemas import OrderOut
from storefront.orders.serialise import orders_out
from storefront.vault.config import build_vault
from storefront.settings import Settings
from pydantic import TypeAdapter

async def main() -> None:
    engine = create_engine(sys.argv[1], statement_timeout_ms=0)
    print("ready", flush=True); sys.stdin.readline()
    vault = build_vault(Settings(environment="development"))
    async with create_sessionmaker(engine)() as session:
        stmt = (select(Order).where(Order.shop_id == uuid.UUID(sys.argv[2]))
                .order_by(Order.id).limit(int(sys.argv[3])).options(selectinload(Order.lines)))
        orders = (await session.execute(stmt)).scalars().all()
        body = TypeAdapter(list[OrderOut]).dump_json(await orders_out(session, orders, vault=vault))
    print(len(orders), len(body), flush=True)
    await engine.dispose()

asyncio.run(main())
"""


def naive(database_url: str, shop_id: str, n: int) -> Result:
    proc = subprocess.Popen(
        [sys.executable, "-c", NAIVE, database_url, shop_id, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        sampler = RssSampler(proc.pid)
        baseline = sampler.rss()
        started = time.perf_counter()
        with sampler:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            count, size = (int(x) for x in proc.stdout.readline().split())
        seconds = time.perf_counter() - started
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count == n, (count, n)
    return Result(
        "buffered (naive, ORM + one JSON body)",
        n,
        baseline / 2**20,
        sampler.peak / 2**20,
        None,
        seconds,
        size / 2**20,
    )


async def api_setup(base: str) -> tuple[str, str, str]:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as c:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        r = await c.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "Bench"},
        )
        r.raise_for_status()
        user_id = r.json()["id"]
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        token = r.json()["access_token"]
        r = await c.post(
            "/api/v1/shops",
            json={"name": "Bench", "slug": f"bench-{uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        return token, r.json()["id"], user_id


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx2.AsyncClient(base_url=base, timeout=2) as c:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                if (await c.get("/livez")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not start")


def report(results: list[Result], n: int, load_s: float, naive_n: int) -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC)
    path = REPORTS / f"{stamp:%Y-%m-%d}-export-memory.md"
    streams = [r for r in results if r.first_byte_s is not None]
    worst = max(r.growth_mb for r in streams)
    verdict = "MET" if worst < TARGET_MB else "NOT MET"

    def first_byte(r: Result) -> str:
        return "" if r.first_byte_s is None else f"{r.first_byte_s * 1000:.0f} ms"

    rows = "\n".join(
        f"| {r.label} | {r.orders:,} | {r.baseline_mb:.1f} | {r.peak_mb:.1f} | "
        f"**{r.growth_mb:.1f}** | {first_byte(r)} | {r.seconds:.1f} | "
        f"{r.orders / r.seconds:,.0f} | {r.megabytes:.0f} |"
        for r in results
    )
    naive_r = next(r for r in results if r.first_byte_s is None)
    projected = naive_r.growth_mb / naive_r.orders * n
    text = f"""# Export memory benchmark — {stamp:%Y-%m-%d %H:%M} UTC

Target: the server's RSS grows by **less than {TARGET_MB:.0f} MB** while it exports
{n:,} orders. Result: **{verdict}** (worst growth of a streamed export: {worst:.1f} MB).

Machine: {platform.node()} · {platform.platform()} · Python {platform.python_version()} ·
{os.cpu_count()} cores · {psutil.virtual_memory().total / 2**30:.0f} GiB. Database:
PostgreSQL on loopback, {n:,} orders with {LINES} lines each (loaded with COPY in
{load_s:.0f} s). Server: `storefront serve`, one uvicorn worker. The client reads the whole
stream as fast as it can; RSS of the server process is sampled every 20 ms.

| export | orders | RSS before (MB) | RSS peak (MB) | growth (MB) | first byte | seconds | orders/s | body (MB) |
|---|---|---|---|---|---|---|---|---|
{rows}

The buffered row is the same export written the naive way (every order and its lines
loaded through the ORM, then one JSON document), run in its own process on {naive_n:,}
orders because at full size it would need about **{projected:,.0f} MB** (its growth is
proportional to the number of orders; the streamed exports' growth is not).

How: `GET /api/v1/shops/{{id}}/orders` with `Accept: application/x-ndjson` or `text/csv`
reads the orders from a server-side cursor (`AsyncSession.stream`, `yield_per=500`), loads
the lines of each batch in one query, writes the batch, and only then fetches the next one;
uvicorn's flow control holds the cursor back when the client is slower than the database.
Rerun: `make bench-export` (`.venv/bin/python bench/export_memory.py --orders N`).
"""
    path.write_text(text)
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.orders
    naive_n = max(1000, n // 10)

    name = f"storefront_bench_export_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_dsn(ADMIN_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "STOREFRONT_ENVIRONMENT": "development",
        "STOREFRONT_DATABASE_URL": database_url,
        "STOREFRONT_PORT": str(port),
        "STOREFRONT_WORKERS": "1",
        "STOREFRONT_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [sys.executable, "-m", "storefront.cli", "migrate"],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "storefront.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_ready(base, server)
        token, shop_id, user_id = await api_setup(base)
        print(f"loading {n:,} orders ...", flush=True)
        load_s = await load_orders(_dsn(database_url), shop_id, user_id, n)
        print(f"loaded in {load_s:.0f} s", flush=True)
        results = []
        for media in ("application/x-ndjson", "text/csv"):
            result = await export(base, token, shop_id, media, server.pid, n)
            print(f"{media}: +{result.growth_mb:.1f} MB in {result.seconds:.1f} s", flush=True)
            results.append(result)
        result = naive(database_url, shop_id, naive_n)
        print(f"naive ({naive_n:,}): +{result.growth_mb:.1f} MB", flush=True)
        results.append(result)
        path = report(results, n, load_s, naive_n)
        print(f"report: {path.relative_to(ROOT)}")
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
