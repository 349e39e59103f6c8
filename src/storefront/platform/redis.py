"""One Redis connection pool per process (full mode); None on the embedded default."""

from __future__ import annotations

from redis.asyncio import Redis


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
