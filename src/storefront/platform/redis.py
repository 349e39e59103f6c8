"""One Redis connection pool per process (full mode); None on the embedded default."""

from __future__ import annotations

import time
from typing import Any

import anyio
from redis.asyncio import Redis

CHECK_TIMEOUT_SECONDS = 2.0


def create_redis(url: str) -> Redis:
    # RESP2 explicitly: redis-py 8 defaults to RESP3, whose push messages change how
    # client-side caching invalidations arrive; every feature here is written for RESP2.
    return Redis.from_url(
        url,
        protocol=2,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=15,
        max_connections=64,
    )


async def check_redis(redis: Redis, within: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with anyio.fail_after(within):
            await redis.ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {
            "status": "down",
            "error": type(exc).__name__,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
