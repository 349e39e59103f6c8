"""The distributed rate limiter (the `limits` library): one budget shared by every process.

Counters live in Redis (sliding-window-counter by default, moving-window on request). When
Redis stops answering, the limiter falls back to a per-process in-memory limiter (logged
once, reported by /healthz) and probes Redis in the background until it answers again. On
the embedded default (no Redis) the in-memory limiter is its normal state (decision 0041).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from storefront.infra.availability import spawn

logger = logging.getLogger("storefront.ratelimit")

Strategy = Literal["sliding-window-counter", "moving-window"]
_STRATEGIES: dict[str, type[RateLimiter]] = {
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
}
# Everything a broken or slow Redis can raise through limits' redis-py bridge.
_STORAGE_FAILURES = (StorageError, RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Limit:
    """One budget of a policy, e.g. ``auth`` at 30 per minute."""

    name: str
    item: RateLimitItem

    @property
    def window_seconds(self) -> int:
        return int(self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Outcome:
    limit: Limit
    allowed: bool
    remaining: int
    reset_seconds: int  # until the budget has room again (at least 1 when refused)


def parse_policy(name: str, rates: str) -> tuple[Limit, ...]:
    items = parse_many(rates)
    if len(items) == 1:
        return (Limit(name, items[0]),)
    return tuple(Limit(f"{name}-{item.get_expiry()}s", item) for item in items)


class DistributedRateLimiter:
    """Redis-backed limiter with a per-process in-memory fallback that heals by itself."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        prefix: str,
        strategy: Strategy = "sliding-window-counter",
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
    ) -> None:
        self._strategy_cls = _STRATEGIES[strategy]
        self.strategy = strategy
        self._timeout = timeout_seconds
        self._retry_seconds = retry_seconds
        self._memory = self._strategy_cls(MemoryStorage())
        self._redis_storage: Storage | None = None
        self._redis: RateLimiter | None = None
        if redis is not None:
            # share the process's pool (limits types its options narrower than it accepts)
            pool: Any = redis.connection_pool
            self._redis_storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                connection_pool=pool,
                key_prefix=f"{prefix}ratelimit",
                wrap_exceptions=True,
            )
            self._redis = self._strategy_cls(self._redis_storage)
        self.fallback_since: float | None = None  # wall-clock time of the switch to memory
        self.fallbacks = 0
        self.last_error: str | None = None
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def backend(self) -> str:
        if self._redis is None or self.fallback_since is not None:
            return "memory"
        return "redis"

    def status(self) -> dict[str, Any]:
        """For /healthz: ``degraded`` while a configured Redis is being stood in for."""
        state: dict[str, Any] = {"backend": self.backend, "strategy": self.strategy}
        if self._redis is None:
            return {"status": "up", **state, "scope": "process"}
        if self.fallback_since is None:
            return {"status": "up", **state, "scope": "shared"}
        return {
            "status": "degraded",
            **state,
            "scope": "process",
            "since": self.fallback_since,
            "error": self.last_error,
            "fallbacks": self.fallbacks,
        }

    async def hit(self, limits: Sequence[Limit], key: str, cost: int = 1) -> list[Outcome]:
        """Spend ``cost`` units (one by default) of every limit for ``key``; each outcome says
        whether it had room."""
        if self._redis is not None and self.fallback_since is None:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._hit(self._redis, limits, key, cost)
            except _STORAGE_FAILURES as exc:
                self._fall_back(exc)
        elif self._redis is not None:
            self._maybe_probe()
        return await self._hit(self._memory, limits, key, cost)

    async def hit_local(self, limits: Sequence[Limit], key: str) -> list[Outcome]:
        """Spend from this process's own in-memory budget, never Redis: for probes and scrapes,
        which target one process (a probe of one pod spends nothing of another's) and must
        not depend on Redis answering."""
        return await self._hit(self._memory, limits, key)

    async def _hit(
        self, limiter: RateLimiter, limits: Sequence[Limit], key: str, cost: int = 1
    ) -> list[Outcome]:
        outcomes = []
        now = time.time()
        for limit in limits:
            allowed = await limiter.hit(limit.item, limit.name, key, cost=cost)
            stats = await limiter.get_window_stats(limit.item, limit.name, key)
            reset = max(0, math.ceil(stats.reset_time - now))
            if not allowed:
                reset = max(1, reset)
            outcomes.append(Outcome(limit, allowed, max(0, stats.remaining), reset))
        return outcomes

    def _fall_back(self, exc: BaseException) -> None:
        self.fallbacks += 1
        self.fallback_since = time.time()
        self.last_error = type(exc.__cause__ or exc).__name__
        self._next_probe = time.monotonic() + self._retry_seconds
        logger.warning(
            "rate limiter: Redis unreachable (%s); falling back to a per-process in-memory "
            "limiter until it answers again",
            self.last_error,
        )

    def _maybe_probe(self) -> None:
        if self._probe is not None or time.monotonic() < self._next_probe:
            return
        self._probe = spawn(self._check_redis(), name="storefront-rate-limit-probe")

    async def _check_redis(self) -> None:
        storage = self._redis_storage
        healthy = False
        if storage is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    healthy = await storage.check()
            except Exception:  # noqa: BLE001 - any failure means "still down"
                healthy = False
        if healthy:
            logger.warning("rate limiter: Redis answers again; back on the shared limiter")
            self.fallback_since = None
            self.last_error = None
        else:
            self._next_probe = time.monotonic() + self._retry_seconds
        self._probe = None

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
