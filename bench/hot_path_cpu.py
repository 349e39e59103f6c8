"""CPU time per request of the hot read paths, in-process (decision 0060).

    .venv/bin/python -m bench.hot_path_cpu [--database-url URL] [--redis-url URL]
        [--requests 4000] [--concurrency 16] [--orders-only] [--profile | --cpu-profile]

Calls the ASGI app directly (no HTTP client, no server), with ``--concurrency`` callers at
once, and reports this process's CPU time per request (``time.process_time``) and the Redis
commands per request. CPU time, unlike wall time, hardly moves with other work on a shared
machine, so two variants can be compared in one run (e.g. ``?limit=020``, which the fast
path leaves to the route, against ``?limit=20``).
PostgreSQL: pass ``--database-url`` of an empty, migrated database, or nothing for SQLite.

The order paths (a page of 20 orders, staff and the customer's own; placing an order with an
Idempotency-Key, three lines) run once, with the cache on, as in the benchmark's mixed load.
Each caller places its orders as a customer of its own, in a shop that lifted its cap on
pending units (otherwise most creations would measure the refusal); a status other than the
expected one is printed with the line. ``--cpu-profile`` samples those paths on the CPU clock
and prints where the time goes (``--profile``: pyinstrument, on the wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import greenlet
import httpx2
import orjson
from asgi_lifespan import LifespanManager
from pyinstrument import Profiler

from bench.profile_hot_paths import PASSWORD, seed, settings_for
from bench.run import order_payload
from storefront.app import create_app
from storefront.cli import run_migrations


class CpuSampler:
    """A sampling profiler on the process's CPU clock: SIGPROF every ``interval`` seconds of
    CPU, the interrupted stack recorded (coroutine frames chain to their caller while they
    run, and SQLAlchemy's greenlets to the coroutine that spawned them, so a request's share
    is inclusive of what it awaits on the CPU)."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.samples: list[tuple[tuple[str, int, str], ...]] = []

    def _sample(self, signum: int, frame: Any) -> None:
        stack = []
        glet = greenlet.getcurrent()
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_firstlineno, code.co_name))
            frame = frame.f_back
            if frame is None and glet is not None and glet.parent is not None:
                # SQLAlchemy's sync core runs in a greenlet: carry on in the one that spawned it
                glet = glet.parent
                frame = glet.gr_frame
        self.samples.append(tuple(stack))

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)  # one may still be on its way

    def report(self, inclusive: int = 60, own: int = 30) -> str:
        """The share of samples in which each function was on the stack, then on top."""
        total = len(self.samples) or 1
        on_stack: collections.Counter[tuple[str, int, str]] = collections.Counter()
        on_top: collections.Counter[tuple[str, int, str]] = collections.Counter()
        for stack in self.samples:
            on_stack.update(set(stack))
            if stack:
                on_top[stack[0]] += 1

        def name(key: tuple[str, int, str]) -> str:
            path = key[0]
            for cut in ("site-packages/", "/src/", f"python{sys.version_info[0]}."):
                if cut in path:
                    path = path.split(cut, 1)[1]
                    break
            return f"{path}:{key[1]}({key[2]})"

        lines = [f"{len(self.samples)} CPU samples; on the stack:"]
        lines += [f"{100 * n / total:6.1f}% {name(k)}" for k, n in on_stack.most_common(inclusive)]
        lines.append("on the stack, Storefront's own functions:")
        ours = [(k, n) for k, n in on_stack.most_common() if "/storefront/" in k[0]]
        lines += [f"{100 * n / total:6.1f}% {name(k)}" for k, n in ours[:inclusive]]
        lines.append("on top (own time):")
        lines += [f"{100 * n / total:6.1f}% {name(k)}" for k, n in on_top.most_common(own)]
        return "\n".join(lines)


async def call(
    app: Any,
    path: str,
    query: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    try:
        await app(scope, receive, send)
    except Exception:  # noqa: BLE001 - the app re-raises after its 500; counted, not fatal
        return 500
    return status


async def measure(args: argparse.Namespace, cache: bool) -> None:
    settings = settings_for(args.database_url, args.redis_url, cache)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as client:
            shop_id, product_id = await seed(client)
        resources = app.state.resources
        commands = 0
        if resources.redis is not None:
            real = resources.redis.execute_command

            async def counted(*a: Any, **k: Any) -> Any:
                nonlocal commands
                commands += 1
                return await real(*a, **k)

            resources.redis.execute_command = counted
        paths = {
            "product": (f"/api/v1/shops/{shop_id}/products/{product_id}", ""),
            "listing (fast path)": (f"/api/v1/shops/{shop_id}/products", "limit=20"),
            "listing (route)": (f"/api/v1/shops/{shop_id}/products", "limit=020"),
        }
        per_caller = args.requests // args.concurrency
        for name, (path, query) in paths.items():
            for _ in range(20):  # fill the caches, open the pools
                if (status := await call(app, path, query)) != 200:
                    raise RuntimeError(f"{name}: {status}")

            async def caller(path: str = path, query: str = query) -> None:
                for _ in range(per_caller):
                    await call(app, path, query)

            before = commands
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = per_caller * args.concurrency
            print(
                f"cache {'on ' if cache else 'off'} {name:20} {1e6 * cpu / n:8.1f} µs CPU/request"
                f"  {1e6 * wall / n:8.1f} µs wall  {(commands - before) / n:.2f} Redis commands"
                "/request"
            )


async def user(client: httpx2.AsyncClient, name: str) -> bytes:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name}
    )
    r.raise_for_status()
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return f"Bearer {r.json()['access_token']}".encode()


def order_body(product_ids: list[str], n: int) -> bytes:
    return orjson.dumps(order_payload(product_ids, n))


async def measure_orders(args: argparse.Namespace) -> None:
    """CPU per request of the order paths (as bench/run.py seeds them: 3 lines an order)."""
    settings = settings_for(args.database_url, args.redis_url, True)
    # no expiry runs: on a database kept between runs it would expire an earlier run's orders
    # in the background, and its CPU would count against this run's requests
    orders = settings.orders.model_copy(update={"expiry_interval_seconds": 0})
    app = create_app(settings.model_copy(update={"orders": orders}))
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as client:
            staff = await user(client, "owner")
            # one customer per caller, as many shoppers would: one customer's orders wait for
            # each other (the hold-limit check locks per customer and shop, decision 0118)
            customers = [await user(client, f"customer{i}") for i in range(args.concurrency)]
            customer = customers[0]
            shop = (
                await client.post(
                    "/api/v1/shops",
                    json={"name": "B", "slug": f"b-{uuid.uuid4().hex[:8]}"},
                    headers={"Authorization": staff.decode()},
                )
            ).json()["id"]
            # a run places thousands of orders: the shop lifts its cap on pending units (as
            # bench/run.py does), or most creations would measure a refusal
            r = await client.patch(
                f"/api/v1/shops/{shop}/order-limits",
                json={"max_pending_units": 1_000_000},
                headers={"Authorization": staff.decode()},
            )
            r.raise_for_status()
            items = [
                {
                    "sku": f"B-{i:04d}",
                    "name": f"Bench product {i}",
                    "description": "bench",
                    "category": "tools",
                    "price_cents": 100 + i,
                    "currency": "EUR",
                    "stock": 1_000_000_000,
                }
                for i in range(50)
            ]
            r = await client.post(
                f"/api/v1/shops/{shop}/products/bulk",
                json={"items": items},
                headers={"Authorization": staff.decode()},
            )
            r.raise_for_status()
            page = (await client.get(f"/api/v1/shops/{shop}/products?limit=100")).json()
            product_ids = [p["id"] for p in page["items"]]
        path = f"/api/v1/shops/{shop}/orders"
        json_headers = [(b"content-type", b"application/json")]
        counter = iter(range(10**9))

        def create() -> tuple[str, str, str, list[tuple[bytes, bytes]], bytes]:
            n = next(counter)
            key = (b"idempotency-key", str(uuid.uuid4()).encode())
            headers = [(b"authorization", customers[n % len(customers)]), key, *json_headers]
            return "POST", path, "", headers, order_body(product_ids, n)

        scenarios = {
            "order creation": create,
            "order listing (staff)": lambda: (
                "GET",
                path,
                "limit=20",
                [(b"authorization", staff)],
                b"",
            ),
            "order listing (own)": lambda: (
                "GET",
                path,
                "limit=20",
                [(b"authorization", customer)],
                b"",
            ),
        }
        expected = {"order creation": 201}
        per_caller = args.requests // args.concurrency
        profiler = Profiler(async_mode="enabled", interval=0.0005) if args.profile else None
        sampler = CpuSampler() if args.cpu_profile else None
        for name, make in scenarios.items():
            for _ in range(40):  # warm up; gives the listings full pages
                method, p, q, h, b = make()
                if (status := await call(app, p, q, method=method, headers=h, body=b)) != (
                    expected.get(name, 200)
                ):
                    raise RuntimeError(f"{name}: {status}")

            statuses: collections.Counter[int] = collections.Counter()

            async def caller(make: Any = make, statuses: Any = statuses) -> None:
                for _ in range(per_caller):
                    method, p, q, h, b = make()
                    statuses[await call(app, p, q, method=method, headers=h, body=b)] += 1

            if profiler is not None:
                profiler.reset()
                profiler.start()
            if sampler is not None:
                sampler.start()
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = per_caller * args.concurrency
            if sampler is not None:
                sampler.stop()
            unexpected = n - statuses[expected.get(name, 200)]
            print(
                f"{name:24} {1e6 * cpu / n:8.1f} µs CPU/request  {1e6 * wall / n:8.1f} µs wall"
                + (f"  UNEXPECTED STATUSES {dict(statuses)}" if unexpected else "")
            )
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))
            if sampler is not None:
                print(sampler.report())
                sampler = CpuSampler()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--orders-only", action="store_true", help="only the order paths")
    parser.add_argument("--profile", action="store_true", help="pyinstrument, order paths")
    parser.add_argument(
        "--cpu-profile",
        action="store_true",
        help="sample the order paths on the process's CPU clock (not wall time, which on a "
        "busy machine mostly shows where the process waited to be scheduled)",
    )
    args = parser.parse_args()
    if args.database_url is None:
        args.database_url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'cpu.db'}"
        run_migrations(database_url=args.database_url)
    asyncio.run(measure_orders(args))
    if args.orders_only:
        return
    for cache in (True, False):
        asyncio.run(measure(args, cache))


if __name__ == "__main__":
    main()
