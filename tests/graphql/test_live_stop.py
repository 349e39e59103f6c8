"""The live-updates hub stops promptly: shutdown never waits on its Redis listener."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from storefront.graphql.live import STOP_SECONDS, LiveHub


@pytest.mark.redis
async def test_stopping_the_hub_ends_its_listener_by_its_flag(
    redis_url: str, redis_prefix: str
) -> None:
    """Cancelling redis-py's blocking ``pubsub.listen()`` was seen never to finish: the API's
    shutdown then hung until the lifespan timed out. The listener now reads in short polls
    and ends by itself when asked."""
    redis = Redis.from_url(redis_url)
    try:
        for _ in range(3):  # a hub per lifespan, as the app makes one each start
            hub = LiveHub(redis, redis_prefix)
            await hub.start()
            await asyncio.wait_for(hub.listening.wait(), timeout=30)
            listener = hub._listener
            assert listener is not None
            await asyncio.wait_for(hub.stop(), timeout=STOP_SECONDS * 2 + 10)
            assert listener.done()
            assert not listener.cancelled()  # it saw the flag; nothing had to be cancelled
    finally:
        await redis.aclose()
