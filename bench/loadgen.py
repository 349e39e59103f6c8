"""A small asyncio load generator (aiohttp): closed loop for throughput, open loop (fixed
arrival rate, latency measured from each request's *scheduled* start, so a slow server
cannot hide queueing: no coordinated omission) for latency under a given load."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    ok: tuple[int, ...] = (200, 201)


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    duration: float
    latencies: list[float]
    offered_rate: float | None = None

    def _pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.duration if self.duration else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p95(self) -> float:
        return self._pct(0.95)

    @property
    def p99(self) -> float:
        return self._pct(0.99)


Picker = Callable[[int], Req]


async def _send(session: aiohttp.ClientSession, req: Req) -> bool:
    try:
        async with session.request(req.method, req.url, headers=req.headers, json=req.json) as r:
            await r.read()
            return r.status in req.ok
    except (TimeoutError, aiohttp.ClientError):
        return False


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=10),
    )


async def closed_loop(name: str, pick: Picker, *, concurrency: int, seconds: float) -> Result:
    latencies: list[float] = []
    errors = 0
    counter = 0
    async with _session(concurrency) as session:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                req = pick(counter)
                t0 = time.perf_counter()
                ok = await _send(session, req)
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(name, len(latencies), errors, elapsed, latencies)


async def open_loop(
    name: str, pick: Picker, *, rate: float, seconds: float, connections: int = 512
) -> Result:
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    async with _session(connections) as session:
        start = time.perf_counter() + 0.05
        tasks = []

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            ok = await _send(session, pick(i))
            latencies.append(time.perf_counter() - scheduled)
            if not ok:
                errors += 1

        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return Result(name, total, errors, elapsed, latencies, offered_rate=rate)
