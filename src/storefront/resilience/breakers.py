"""Circuit breakers on purgatory: state in Redis when it is configured (every process of
the deployment sees the same circuit), in the process otherwise (the embedded mode).

purgatory's model decides the transitions (closed -> opened after ``threshold`` failures in
a row, opened -> half-opened once ``ttl`` has passed, half-opened -> closed on a success or
back to opened on a failure). Around it this module adds what a deployment needs:

- the Redis state lives under the installation's key prefix, on the process's own pool;
- the threshold and cool-down come from the settings on every call (purgatory would keep
  the values the circuit was first created with in Redis);
- one probe at a time per process while half-open: the other callers are refused as if the
  circuit were open, so a recovering dependency gets one call, not a stampede;
- a Redis that is away never fails the call: the breaker falls back to the process's own
  state, asking Redis again every few seconds (logged once each way).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from purgatory import AsyncAbstractUnitOfWork, AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork
from purgatory.domain.model import OpenedState
from purgatory.service._async.repository import AsyncRedisRepository
from redis.exceptions import RedisError

from storefront.infra.availability import dependency as dependency_status
from storefront.resilience import metrics
from storefront.resilience.errors import CircuitOpen

if TYPE_CHECKING:
    from purgatory.domain.model import Context
    from redis.asyncio import Redis

    from storefront.resilience.policy import Policy


REDIS_RETRY_SECONDS = 5.0  # after a Redis error, how long the process keeps its own state


class _PrefixedRedisRepository(AsyncRedisRepository):
    """purgatory's Redis repository on an existing client and under our key prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:  # no super(): it opens a client
        self.redis = redis
        self.messages = []
        self.prefix = prefix

    async def initialize(self) -> None:
        return None


class _RedisUnitOfWork(AsyncAbstractUnitOfWork):
    def __init__(self, repository: AsyncRedisRepository) -> None:
        self.contexts = repository

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None


@dataclass(slots=True)
class Entry:
    """A call admitted by its breaker: leave with :meth:`Breakers.leave`."""

    name: str
    dependency: str
    context: Context
    factory: AsyncCircuitBreakerFactory
    probing: bool


class Breakers:
    def __init__(self, *, redis: Redis | None, prefix: str) -> None:
        self._local = AsyncCircuitBreakerFactory(uow=AsyncInMemoryUnitOfWork())
        self._shared: AsyncCircuitBreakerFactory | None = None
        if redis is not None:
            uow = _RedisUnitOfWork(_PrefixedRedisRepository(redis, f"{prefix}breaker:"))
            self._shared = AsyncCircuitBreakerFactory(uow=uow)
        self._shared_retry_at = 0.0  # while Redis is away: the process's own circuits until
        self._probing: set[str] = set()
        # worst state per dependency, from the breakers seen not closed (bounded: closed
        # ones are dropped)
        self._not_closed: dict[str, dict[str, str]] = {}

    async def _context(
        self, name: str, policy: Policy
    ) -> tuple[Context, AsyncCircuitBreakerFactory]:
        if self._shared is not None and time.monotonic() >= self._shared_retry_at:
            try:
                breaker = await self._shared.get_breaker(
                    name, threshold=policy.failure_threshold, ttl=policy.cool_down_seconds
                )
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
            else:
                dependency_status("redis").up()
                return breaker.context, self._shared
        breaker = await self._local.get_breaker(
            name, threshold=policy.failure_threshold, ttl=policy.cool_down_seconds
        )
        return breaker.context, self._local

    async def enter(self, name: str, policy: Policy) -> Entry:
        """Admit a call or raise :class:`CircuitOpen` (nothing is sent)."""
        context, factory = await self._context(name, policy)
        context.threshold = policy.failure_threshold
        context.ttl = policy.cool_down_seconds
        now = time.time()
        opened_at = context.opened_at
        probe = context.state == "half-opened" or (
            context.state == "opened" and opened_at is not None and now > opened_at + context.ttl
        )
        if probe and name in self._probing:
            self._observe(policy.dependency, name, "opened")
            raise CircuitOpen(policy.dependency, retry_after=1)
        try:
            context.handle_new_request()
        except OpenedState as opened:
            self._observe(policy.dependency, name, "opened")
            remaining = opened.opened_at + context.ttl - now
            raise CircuitOpen(policy.dependency, retry_after=math.ceil(remaining)) from None
        if probe:
            self._probing.add(name)
        await self._flush(context, factory)
        self._observe(policy.dependency, name, context.state)
        return Entry(name, policy.dependency, context, factory, probe)

    async def leave(self, entry: Entry, error: BaseException | None, *, counted: bool) -> None:
        """Record the call's end: a failure (``error`` and ``counted``), a success (no
        error), or nothing (``counted`` false: refused before it was sent, or cancelled)."""
        try:
            if error is None:
                entry.context.handle_end_request()
            elif counted:
                entry.context.handle_exception(error)
            await self._flush(entry.context, entry.factory)
        finally:
            if entry.probing:
                self._probing.discard(entry.name)
        self._observe(entry.dependency, entry.name, entry.context.state)

    async def _flush(self, context: Context, factory: AsyncCircuitBreakerFactory) -> None:
        try:
            while context.messages:
                await factory.messagebus.handle(context.messages.pop(0), factory.uow)
        except (RedisError, OSError) as exc:
            context.messages.clear()
            self._redis_failed(exc)

    def _redis_failed(self, exc: BaseException) -> None:
        # the process's own circuits for a while: a Redis that hangs must not add its
        # timeout to every outgoing call
        self._shared_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        dependency_status("redis").down(f"circuit breaker state: {type(exc).__name__}")

    def _observe(self, dependency: str, name: str, state: str) -> None:
        states = self._not_closed.setdefault(dependency, {})
        if state == "closed":
            states.pop(name, None)
        else:
            states[name] = state
        worst = max((metrics.STATE_VALUES[s] for s in states.values()), default=0)
        metrics.BREAKER_STATE.labels(dependency=dependency).set(worst)

    def state(self, dependency: str, name: str | None = None) -> str:
        """The state this process last saw (``closed``, ``half-opened``, ``opened``)."""
        return self._not_closed.get(dependency, {}).get(name or dependency, "closed")
