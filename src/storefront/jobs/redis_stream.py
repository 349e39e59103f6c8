"""The Redis stream broker, made to outlive a dropped connection or a short Redis outage
(docs/decisions/0130-worker-outlives-a-redis-outage.md), and to follow a Sentinel failover
(decision 0176: on a ``redis+sentinel://`` URL its pool asks the sentinels for the master)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from redis import exceptions as redis_exc
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from storefront.infra.availability import Backoff, dependency
from storefront.infra.redis import create_pool

RECONNECT_BASE_SECONDS = 0.5
RECONNECT_CAP_SECONDS = 30.0  # the longest wait between two attempts


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis is away (or came back without our consumer group)."""
    if isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError):
        return True
    return isinstance(exc, redis_exc.ResponseError) and str(exc).startswith("NOGROUP")


class ReconnectingRedisStreamBroker(RedisStreamBroker):
    """``RedisStreamBroker`` whose listener survives Redis going away and coming back."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        # taskiq-redis builds a plain pool from the URL; ours understands Sentinel addresses
        # too. (taskiq-redis's own RedisStreamSentinelBroker never reclaims the messages of a
        # dead worker, nor reads in batches: decision 0176.)
        super().__init__("redis://", **kwargs)
        # as taskiq-redis's: unbounded, and no read timeout (XREADGROUP blocks on purpose)
        self.connection_pool = create_pool(
            url, max_connections=None, timeout=None, socket_timeout=None
        )

    async def shutdown(self) -> None:
        await super().shutdown()
        await self.connection_pool.aclose()  # a Sentinel pool closes its sentinel clients

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        status = dependency("redis")
        backoff = Backoff(RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS)
        while True:
            inner = super().listen()
            try:
                if backoff.failures:  # back after an outage: the group may be gone
                    await self._declare_consumer_group()
                    backoff.reset()
                    status.up()
                while True:
                    try:
                        message = await anext(inner)
                    except Exception as exc:
                        if not _lost(exc):
                            raise
                        status.down(f"{type(exc).__name__}: {exc}"[:200])
                        break
                    yield message
            except Exception as exc:
                if not _lost(exc):
                    raise
                status.down(f"{type(exc).__name__}: {exc}"[:200])
            finally:
                await inner.aclose()
            await asyncio.sleep(backoff.next_delay())
