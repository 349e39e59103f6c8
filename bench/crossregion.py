"""Cross-region failover, simulated on loopback: an asynchronous replica in a "second region"
is promoted after the primary's region is lost, and the acknowledged writes it lacks are
counted (docs/scaling.md#cross-region, decision 0198). `make crossregion-drill`.

What it builds (PostgreSQL 15, scratch clusters of its own under a temporary directory, run
as the ``postgres`` user when started as root; ports ``--port-base`` .. +2, 5480-5482 by
default):

- **region A, the primary** (``--port-base``): initdb, WAL for streaming, the Storefront
  schema (``storefront migrate``), one shop and its products;
- **the inter-region link** (``--port-base`` + 2): a TCP relay (this module, ``--link``, a
  process of its own) that holds every chunk it reads for ``--link-delay-ms`` before passing it
  on, in both directions: a one-way network delay without touching the host's network
  (``tc netem`` would delay every loopback user of this shared machine);
- **region B, the asynchronous replica** (``--port-base`` + 1): ``pg_basebackup`` with its own
  replication slot, streaming *through the link*, ``recovery_min_apply_delay`` =
  ``--apply-delay-s`` (a delayed replica: a mistake on the primary reaches it that much later).

Then, for ``--seconds``, writers place orders at ``--rate`` a second (one transaction each: an
order, its line, the product's stock), as the app's checkout writes them, and keep a ledger of
every order whose COMMIT returned (acknowledged). **The regional loss**: every process of the
primary and the link is frozen (SIGSTOP) at one instant and then killed (SIGKILL), so nothing
acknowledged before that instant is missing from the ledger and nothing in flight on the link
arrives later. **The runbook** (docs/scaling.md) on region B: look at what it received and
replayed, drop the apply delay (``ALTER SYSTEM``, reload) so it replays all it received, promote
(``pg_promote``), wait until it accepts a write. **Measured**: the time to promote (runbook start
to first accepted write), and the data lost: acknowledged orders missing on the promoted
replica, and how far back before the loss the oldest of them was acknowledged.

Writes ``bench/reports/crossregion-<date>-<time>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
REPORTS = Path(__file__).parent / "reports"
BINDIR = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
PRODUCTS = 8


# --- the inter-region link: a delaying TCP relay ---------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk delivered ``delay`` seconds after it was read, in order
    and without limiting throughput (chunks in flight wait in a queue, as on a long wire)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
        queue.put_nowait((0.0, b""))
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
    finally:
        with suppress(Exception):
            writer.close()


async def run_link(listen: int, target: int, delay_ms: float) -> None:
    delay = delay_ms / 1000

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            _pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay),
            return_exceptions=True,
        )  # fmt: skip

    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


# --- scratch clusters --------------------------------------------------------------------------


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(*args: str | Path, timeout: float = 180) -> str:
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, our own arguments
        [*_as_postgres(), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{Path(str(args[0])).name} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split("\n", 1)[0])


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Region:
    name: str
    data: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/storefront"


@dataclass
class Clusters:
    root: Path
    primary: Region
    replica: Region
    link_port: int
    link: subprocess.Popen[bytes] | None = None


@contextmanager
def clusters(port_base: int, keep: bool = False) -> Iterator[Clusters]:
    if not (BINDIR / "initdb").exists():
        sys.exit(f"PostgreSQL 15 is not installed ({BINDIR}/initdb): apt-get install postgresql-15")
    for port in (port_base, port_base + 1, port_base + 2):
        if not _port_free(port):
            sys.exit(f"port {port} is taken: pass --port-base")
    root = Path(tempfile.mkdtemp(prefix="storefront-crossregion-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    made = Clusters(
        root,
        Region("region-a", root / "region-a", port_base),
        Region("region-b", root / "region-b", port_base + 1),
        port_base + 2,
    )
    try:
        yield made
    finally:
        if made.link is not None and made.link.poll() is None:
            made.link.kill()
            made.link.wait(10)
        for region in (made.replica, made.primary):
            if (region.data / "postmaster.pid").exists():
                with suppress(Exception):
                    _run(
                        BINDIR / "pg_ctl", "-D", region.data, "-m", "immediate", "stop", timeout=60
                    )
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def start_primary(c: Clusters) -> None:
    p = c.primary
    _run(BINDIR / "initdb", "-D", p.data, "-A", "trust", "-U", "postgres", "--locale=C.UTF-8")
    with (p.data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {p.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{c.root}'\nwal_level = replica\n"
            "max_wal_senders = 4\nmax_replication_slots = 4\nshared_buffers = 32MB\n"
            "max_connections = 40\n"
            # acknowledged = flushed locally: a commit does not wait for region B (asynchronous)
            "synchronous_commit = on\nsynchronous_standby_names = ''\n"
        )
    with (p.data / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    _run(BINDIR / "pg_ctl", "-D", p.data, "-l", c.root / "region-a.log", "-w", "start")
    _run(BINDIR / "psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres",
         "-d", "postgres", "-c", "CREATE DATABASE storefront")  # fmt: skip
    env = {**os.environ, "STOREFRONT_DATABASE_URL": p.dsn}
    migrate = subprocess.run(  # noqa: S603 - the project's own CLI
        [str(REPO / ".venv" / "bin" / "storefront"), "migrate"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if migrate.returncode != 0:
        raise RuntimeError(f"storefront migrate failed: {migrate.stderr[-2000:]}")


def start_link(c: Clusters, delay_ms: float) -> None:
    c.link = subprocess.Popen(  # noqa: S603 - this module, our own arguments
        [sys.executable, "-m", "bench.crossregion", "--link",
         str(c.link_port), str(c.primary.port), str(delay_ms)],
        cwd=REPO, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while _port_free(c.link_port):
        if c.link.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the link relay did not start")
        time.sleep(0.1)


def start_replica(c: Clusters, apply_delay_s: float) -> None:
    r = c.replica
    _run(
        BINDIR / "pg_basebackup", "-h", "127.0.0.1", "-p", str(c.primary.port), "-U", "postgres",
        "-D", r.data, "-X", "stream", "-c", "fast", "-C", "-S", "region_b",
    )  # fmt: skip
    (r.data / "standby.signal").touch()
    with (r.data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {r.port}\n"
            # region B reaches region A only through the link
            f"primary_conninfo = 'host=127.0.0.1 port={c.link_port} user=postgres "
            "application_name=region_b'\n"
            "primary_slot_name = 'region_b'\nhot_standby = on\n"
            f"recovery_min_apply_delay = '{int(apply_delay_s * 1000)}ms'\n"
            "wal_receiver_status_interval = 1s\n"
        )
    if os.geteuid() == 0:
        shutil.chown(r.data / "standby.signal", "postgres")
    _run(BINDIR / "pg_ctl", "-D", r.data, "-l", c.root / "region-b.log", "-w", "start")


async def wait_streaming(primary_dsn: str, within: float = 60) -> None:
    conn = await asyncpg.connect(primary_dsn.replace("/storefront", "/postgres"))
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = await conn.fetchval(
                "SELECT state FROM pg_stat_replication WHERE application_name = 'region_b'"
            )
            if state == "streaming":
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("region B is not streaming from region A")
    finally:
        await conn.close()


# --- the load and its ledger ---------------------------------------------------------------


@dataclass
class Ledger:
    acked: dict[str, float] = field(default_factory=dict)  # order id -> monotonic ack time
    in_doubt: set[str] = field(default_factory=set)  # COMMIT sent, no answer: either way is right
    refused: int = 0  # failed before COMMIT: must not exist
    lag_samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a writer that stopped before the loss


async def seed(dsn: str) -> tuple[str, list[str]]:
    shop = str(uuid.uuid4())
    products = [str(uuid.uuid4()) for _ in range(PRODUCTS)]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO shops (id, name, slug, created_at, updated_at) "
                "VALUES ($1, 'Cross-region drill', $2, now(), now())",
                uuid.UUID(shop), f"crossregion-{shop[:8]}",
            )  # fmt: skip
            for i, product in enumerate(products):
                await conn.execute(
                    "INSERT INTO products (id, shop_id, sku, name, description, price_cents, "
                    "currency, stock, category, status, version, created_at, updated_at) VALUES "
                    "($1, $2, $3, $4, '', 1999, 'EUR', 1000000, 'drill', 'active', 1, now(), "
                    "now())",
                    uuid.UUID(product), uuid.UUID(shop), f"SKU-{i}", f"Drill product {i}",
                )  # fmt: skip
    finally:
        await conn.close()
    return shop, products


async def place_order(conn: Any, shop: str, product: str, order_id: str, ledger: Ledger) -> None:
    """One checkout transaction: the order, its line and the stock, committed together."""
    qty = random.randint(1, 3)  # noqa: S311 - load shape, not security
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(
            "INSERT INTO orders (id, shop_id, customer_id, status, currency, total_cents, version, "
            "created_at, updated_at, shipping_address_sealed) VALUES "
            "($1, $2, NULL, 'pending', 'EUR', $3, 1, now(), now(), 'drill')",
            uuid.UUID(order_id), uuid.UUID(shop), 1999 * qty,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO order_lines (id, order_id, position, product_id, sku, name, "
            "unit_price_cents, quantity, line_total_cents, shop_id) "
            "SELECT $1, $2, 0, id, sku, name, price_cents, $3::int, price_cents * $3::int, shop_id "
            "FROM products WHERE id = $4",
            uuid.uuid4(), uuid.UUID(order_id), qty, uuid.UUID(product),
        )  # fmt: skip
        await conn.execute(
            "UPDATE products SET stock = stock - $1, version = version + 1, updated_at = now() "
            "WHERE id = $2",
            qty, uuid.UUID(product),
        )  # fmt: skip
    except BaseException:
        ledger.refused += 1
        with suppress(Exception):
            await tx.rollback()
        raise
    try:
        await tx.commit()
    except BaseException:
        ledger.in_doubt.add(order_id)
        raise
    ledger.acked[order_id] = time.monotonic()


async def writer(
    index: int, dsn: str, shop: str, product: str, rate: float, stop: asyncio.Event, ledger: Ledger
) -> None:
    """Open loop: one order every ``1/rate`` seconds, whatever the previous one took."""
    conn = await asyncpg.connect(dsn)
    period = 1 / rate
    next_at = time.monotonic() + period * random.random()  # noqa: S311
    try:
        while not stop.is_set():
            wait = next_at - time.monotonic()
            if wait > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    return
            next_at += period
            await place_order(conn, shop, product, str(uuid.uuid4()), ledger)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        if not stop.is_set():
            ledger.errors.append(f"writer {index}: {type(error).__name__}: {error}")
    finally:
        conn.terminate()


async def sample_lag(dsn: str, stop: asyncio.Event, ledger: Ledger) -> None:
    """What region A says of region B: bytes not yet received / replayed, and the lag times."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            row = await conn.fetchrow(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint AS unflushed, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS unreplayed, "
                "extract(epoch FROM write_lag)::float AS write_lag, "
                "extract(epoch FROM replay_lag)::float AS replay_lag "
                "FROM pg_stat_replication WHERE application_name = 'region_b'"
            )
            if row is not None:
                ledger.lag_samples.append(dict(row))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return
    finally:
        conn.terminate()


# --- the regional loss and the runbook ---------------------------------------------------------


def lose_region(c: Clusters) -> float:
    """Region A is gone at one instant: its PostgreSQL (the postmaster's whole process group:
    pg_ctl starts it as a session leader) and the link frozen, then killed. Returns the time."""
    pgid = _postmaster_pid(c.primary.data)
    if c.link is None:
        raise RuntimeError("no link to cut")
    os.killpg(pgid, signal.SIGSTOP)
    os.killpg(c.link.pid, signal.SIGSTOP)
    lost_at = time.monotonic()
    os.killpg(pgid, signal.SIGKILL)
    os.killpg(c.link.pid, signal.SIGKILL)
    c.link.wait(10)
    return lost_at


@dataclass
class Promotion:
    received_lsn: str | None
    replayed_lsn_before: str | None
    replayed_lsn_after: str | None
    last_replayed_commit_age_s: float | None
    seconds_to_promote: float
    steps: list[tuple[str, float]]


async def promote(replica: Region) -> Promotion:
    """The runbook's steps on region B (docs/scaling.md), each timed."""
    started = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(name: str) -> None:
        steps.append((name, round(time.monotonic() - started, 3)))

    admin = replica.dsn.replace("/storefront", "/postgres")
    conn = await asyncpg.connect(admin)
    try:
        # 1. what region B has: received (on its disk) and replayed (visible)
        row = await conn.fetchrow(
            "SELECT pg_last_wal_receive_lsn()::text AS received, "
            "pg_last_wal_replay_lsn()::text AS replayed, "
            "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float AS age"
        )
        step("state read")
        # 2. stop following region A (were it to come back, region B must not stream from it
        # again) and replay everything received: the apply delay is for mistakes, not for a
        # failover (PostgreSQL also ends it when promotion is requested)
        await conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
        await conn.execute("ALTER SYSTEM SET recovery_min_apply_delay = 0")
        await conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 300
        while True:
            replayed, caught_up = await conn.fetchrow(
                "SELECT pg_last_wal_replay_lsn()::text, "
                "pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn()) <= 0",
                row["received"],
            )  # fmt: skip
            if caught_up or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        step("received WAL replayed")
        # 3. promote
        promoted = await conn.fetchval("SELECT pg_promote(wait => true, wait_seconds => 120)")
        if not promoted:
            raise RuntimeError("pg_promote did not finish within 120 s")
        step("promoted")
    finally:
        await conn.close()
    # 4. the first write accepted in region B
    deadline = time.monotonic() + 60
    while True:
        try:
            w = await asyncpg.connect(replica.dsn)
            try:
                await w.execute("CREATE TABLE IF NOT EXISTS crossregion_probe (at timestamptz)")
                await w.execute("INSERT INTO crossregion_probe VALUES (now())")
            finally:
                await w.close()
            break
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    step("write accepted")
    return Promotion(
        received_lsn=row["received"],
        replayed_lsn_before=row["replayed"],
        replayed_lsn_after=replayed,
        last_replayed_commit_age_s=row["age"],
        seconds_to_promote=round(time.monotonic() - started, 3),
        steps=steps,
    )


# --- one run -------------------------------------------------------------------------------


@dataclass
class Result:
    link_delay_ms: float
    apply_delay_s: float
    seconds: float
    rate: float
    acknowledged: int
    in_doubt: int
    lost: list[str]
    lost_window_s: float | None  # the oldest lost write was acknowledged this long before the loss
    in_doubt_present: int
    unexpected: int  # orders present that were never attempted: must be 0
    promotion: Promotion
    lag_p50_s: float | None
    lag_max_s: float | None
    unreplayed_bytes_max: int | None
    ledger: dict[str, float] = field(repr=False)

    @property
    def lost_count(self) -> int:
        return len(self.lost)


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


async def run(
    port_base: int, link_delay_ms: float, apply_delay_s: float, seconds: float, rate: float,
    writers: int = 4, keep: bool = False, log: Any = print,
) -> Result:  # fmt: skip
    async with drill(
        port_base, link_delay_ms, apply_delay_s, seconds, rate, writers, keep, log
    ) as (_, result):
        return result


@asynccontextmanager
async def drill(
    port_base: int, link_delay_ms: float, apply_delay_s: float, seconds: float, rate: float,
    writers: int = 4, keep: bool = False, log: Any = print,
) -> AsyncIterator[tuple[Clusters, Result]]:  # fmt: skip
    """One run; yields region B still running (promoted) with the result, then removes all."""
    with clusters(port_base, keep) as c:
        log(f"region A: initdb, the Storefront schema (:{c.primary.port})")
        start_primary(c)
        shop, products = await seed(c.primary.dsn)
        log(f"the link :{c.link_port} -> :{c.primary.port}, {link_delay_ms:g} ms each way")
        start_link(c, link_delay_ms)
        log(f"region B: pg_basebackup, streaming through the link, apply delay {apply_delay_s:g} s")
        start_replica(c, apply_delay_s)
        await wait_streaming(c.primary.dsn)
        ledger = Ledger()
        stop = asyncio.Event()
        log(f"load: {rate:g} orders/s for {seconds:g} s")
        tasks = [
            asyncio.create_task(
                writer(i, c.primary.dsn, shop, products[i % PRODUCTS], rate / writers, stop, ledger)
            )
            for i in range(writers)
        ]
        sampler = asyncio.create_task(sample_lag(c.primary.dsn, stop, ledger))
        await asyncio.sleep(seconds)
        lost_at = lose_region(c)
        log(f"region A lost ({len(ledger.acked)} orders acknowledged); the runbook on region B")
        stop.set()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
        if ledger.errors:
            raise RuntimeError("the load failed before the loss: " + "; ".join(ledger.errors))
        # every COMMIT answered was answered before the freeze (a frozen server sends nothing);
        # the client may read the last answers a moment after it
        acked = dict(ledger.acked)
        promotion = await promote(c.replica)
        conn = await asyncpg.connect(c.replica.dsn)
        try:
            present = {
                str(r["id"])
                for r in await conn.fetch(
                    "SELECT id FROM orders WHERE shop_id = $1", uuid.UUID(shop)
                )
            }
        finally:
            await conn.close()
        lost = sorted(set(acked) - present, key=lambda k: acked[k])
        unexpected = present - set(acked) - ledger.in_doubt
        lags = [s["replay_lag"] for s in ledger.lag_samples if s["replay_lag"] is not None]
        unreplayed = [s["unreplayed"] for s in ledger.lag_samples if s["unreplayed"] is not None]
        result = Result(
            link_delay_ms=link_delay_ms,
            apply_delay_s=apply_delay_s,
            seconds=seconds,
            rate=rate,
            acknowledged=len(acked),
            in_doubt=len(ledger.in_doubt),
            lost=lost,
            lost_window_s=round(max(0.0, lost_at - acked[lost[0]]), 3) if lost else None,
            in_doubt_present=len(ledger.in_doubt & present),
            unexpected=len(unexpected),
            promotion=promotion,
            lag_p50_s=_median(lags),
            lag_max_s=max(lags) if lags else None,
            unreplayed_bytes_max=max(unreplayed) if unreplayed else None,
            ledger={k: round(lost_at - v, 4) for k, v in acked.items()},
        )
        log(
            f"promoted in {promotion.seconds_to_promote:.2f} s; {result.lost_count} of "
            f"{result.acknowledged} acknowledged orders lost"
            + (f" (the last {result.lost_window_s:.3f} s)" if lost else "")
        )
        yield c, result


# --- the report --------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = " s", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def markdown(results: list[Result], context: dict[str, Any]) -> str:
    lines = [
        f"# Cross-region failover drill, {context['started']}",
        "",
        "`make crossregion-drill` (bench/crossregion.py, decision 0198): region A a PostgreSQL 15",
        "primary with the Storefront schema, region B an asynchronous replica streaming through",
        "a relay that delays every chunk by the link delay each way; orders written at a fixed",
        "rate, region A and the link frozen and killed at one instant, region B promoted by the",
        "runbook (docs/scaling.md#cross-region-failover-runbook).",
        "",
        f"Host: {context['host']}, load average at start {context['load']}.",
        "",
        "| link delay (one way) | apply delay | orders/s | acknowledged | lost | lost window |"
        " replay lag p50 / max | time to promote | in doubt (present) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.link_delay_ms:g} ms | {r.apply_delay_s:g} s | {r.rate:g} | {r.acknowledged} "
            f"| **{r.lost_count}** | {_fmt(r.lost_window_s, digits=3)} "
            f"| {_fmt(r.lag_p50_s)} / {_fmt(r.lag_max_s)} "
            f"| **{r.promotion.seconds_to_promote:.2f} s** | {r.in_doubt} ({r.in_doubt_present}) |"
        )
    lines += [
        "",
        "- **lost**: orders whose COMMIT returned on region A and that region B lacks after its",
        "  promotion; **lost window**: how long before the loss the oldest of them was",
        "  acknowledged (the RPO actually suffered). Orders never acknowledged are not counted.",
        "- **time to promote**: from the runbook's first step on region B to the first write it",
        "  accepted (detection and the decision to fail over are not in it).",
        "- **in doubt**: COMMIT sent, no answer (the region died in between): present or not,",
        "  both are correct; **unexpected** orders (present, never attempted): "
        + ", ".join(str(r.unexpected) for r in results)
        + ".",
        "",
        "Runbook steps, seconds from its start:",
        "",
    ]
    for r in results:
        steps = ", ".join(f"{name} {at:.2f}" for name, at in r.promotion.steps)
        lines.append(
            f"- link {r.link_delay_ms:g} ms, apply delay {r.apply_delay_s:g} s: {steps} "
            f"(received {r.promotion.received_lsn}, replayed {r.promotion.replayed_lsn_before} "
            f"-> {r.promotion.replayed_lsn_after}; newest replayed commit "
            f"{_fmt(r.promotion.last_replayed_commit_age_s)} old at the start)"
        )
    lines.append("")
    return "\n".join(lines)


def write_report(results: list[Result], context: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = context["stamp"]
    path = directory / f"crossregion-{stamp}.md"
    path.write_text(markdown(results, context))
    data = {
        "context": context,
        "runs": [
            {**{k: v for k, v in asdict(r).items() if k != "ledger"}, "lost_count": r.lost_count}
            for r in results
        ],
    }
    (directory / f"crossregion-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    return path


def _scenario(text: str) -> tuple[float, float]:
    link, _, apply = text.partition(":")
    return float(link), float(apply or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port-base", type=int, default=5480)
    parser.add_argument(
        "--scenario", type=_scenario, action="append", metavar="LINK_MS[:APPLY_S]",
        help="one run: the link's one-way delay in ms and region B's apply delay in s "
        "(repeatable; default 20:0, 100:0 and 100:30)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="load before the loss")
    parser.add_argument("--rate", type=float, default=100.0, help="orders a second")
    parser.add_argument("--keep", action="store_true", help="keep the clusters' directory")
    parser.add_argument("--reports", type=Path, default=REPORTS)
    parser.add_argument("--link", nargs=3, metavar=("LISTEN", "TARGET", "DELAY_MS"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.link:
        asyncio.run(run_link(int(args.link[0]), int(args.link[1]), float(args.link[2])))
        return 0
    scenarios = args.scenario or [(20.0, 0.0), (100.0, 0.0), (100.0, 30.0)]
    started = datetime.now(UTC)
    context = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "stamp": started.strftime("%Y%m%d-%H%M"),
        "host": f"{os.cpu_count()} cores",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "seconds": args.seconds,
    }
    results = []
    for link_ms, apply_s in scenarios:
        results.append(
            asyncio.run(run(args.port_base, link_ms, apply_s, args.seconds, args.rate,
                            keep=args.keep))
        )  # fmt: skip
    path = write_report(results, context, args.reports)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
