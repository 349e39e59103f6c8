"""One Redis connection pool per process (full mode); None on the embedded default."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

MAX_CONNECTIONS = 64
# how long a caller waits for a pooled connection when all are busy: as long as one command
# may take, so a burst queues briefly instead of failing
POOL_WAIT_SECONDS = 1.0


def create_redis(url: str) -> Redis:
    # A blocking pool: more concurrent callers than connections wait for one to come back
    # (the plain pool raises MaxConnectionsError, which the rate limiter and the cache read
    # as "Redis is down" and fall back from, under exactly the load they exist for).
    # RESP2 explicitly: redis-py 8 defaults to RESP3, whose push messages change how
    # client-side caching invalidations arrive; every feature here is written for RESP2.
    pool = BlockingConnectionPool.from_url(
        url,
        protocol=2,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=15,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
