"""The guard around one outgoing call: circuit breaker, bulkhead, deadline, metrics; and
:meth:`Resilience.call`, which adds jittered retries for idempotent calls (stamina)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import stamina

from storefront.resilience import metrics
from storefront.resilience.breakers import Breakers
from storefront.resilience.bulkhead import Bulkheads
from storefront.resilience.errors import DependencyUnavailable
from storefront.resilience.policy import Policy, policy_for

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from storefront.settings import ResilienceSettings

T = TypeVar("T")

# failures worth another attempt of an idempotent call: the request may not have arrived
TRANSIENT: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable (aiohttp's connector errors are OSErrors too)
    TimeoutError,
    aiohttp.ClientConnectionError,  # server disconnected, payload cut short
)


class Resilience:
    """Breakers, bulkheads and policies of every outgoing dependency of one process.

    ``redis``: where breaker state is shared by every process (None: in this process only).
    ``clients``: per dependency, what its client is already configured with (timeouts),
    used where ``settings.dependencies`` says nothing.
    """

    def __init__(
        self,
        settings: ResilienceSettings,
        *,
        redis: Redis | None,
        prefix: str = "storefront:",
        clients: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.settings = settings
        self._clients = dict(clients or {})
        self.breakers = Breakers(redis=redis, prefix=prefix)
        self._bulkheads = Bulkheads()
        self._policies: dict[str, Policy] = {}

    def policy(self, dependency: str) -> Policy:
        policy = self._policies.get(dependency)
        if policy is None:
            policy = self._policies[dependency] = policy_for(
                self.settings, dependency, self._clients.get(dependency)
            )
        return policy

    @asynccontextmanager
    async def guard(
        self,
        dependency: str,
        *,
        key: str | None = None,
        exclude: tuple[type[BaseException], ...] = (),
    ) -> AsyncIterator[Policy]:
        """Guard the block's call to ``dependency``; yields its :class:`Policy` (the client
        should connect within ``policy.connect_timeout_seconds``).

        Refused at once with :class:`DependencyUnavailable` (a 503 with ``Retry-After``)
        while the circuit is open or the bulkhead stays full for its bounded wait; the block
        is cancelled with ``TimeoutError`` past ``policy.timeout_seconds``. An error of a
        class in ``exclude`` (the dependency answered, on purpose: a declined card) passes
        through without counting against the circuit. ``key``: a circuit and a bulkhead per
        target of the dependency (each webhook receiver host); metrics stay per dependency.
        """
        policy = self.policy(dependency)
        name = dependency if key is None else f"{dependency}:{key}"
        try:
            entry = await self.breakers.enter(name, policy)
        except DependencyUnavailable:
            metrics.record_call(dependency, "open")
            raise
        error: BaseException | None = None
        counted = False
        started: float | None = None
        try:
            async with self._bulkheads.slot(
                name, dependency, limit=policy.max_concurrent, max_wait=policy.max_wait_seconds
            ):
                started = time.perf_counter()
                async with asyncio.timeout(policy.timeout_seconds):
                    yield policy
        except DependencyUnavailable as exc:
            error = exc
            if started is None:  # the bulkhead refused: nothing was sent
                metrics.record_call(dependency, "busy")
            else:  # a guard inside the block refused (a nested dependency): not this one's
                metrics.record_call(dependency, "excluded")
            raise
        except Exception as exc:
            error = exc
            counted = not isinstance(exc, exclude)
            if not counted:
                metrics.record_call(dependency, "excluded")
            else:
                metrics.record_failure(dependency, exc)
                metrics.record_call(
                    dependency, "timeout" if isinstance(exc, TimeoutError) else "failure"
                )
            raise
        except BaseException as exc:  # cancelled: neither a success nor a failure
            error = exc
            raise
        else:
            metrics.record_call(dependency, "success")
        finally:
            if started is not None:
                metrics.observe_duration(dependency, time.perf_counter() - started)
            await self.breakers.leave(entry, error, counted=counted)

    async def call(
        self,
        dependency: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        key: str | None = None,
        exclude: tuple[type[BaseException], ...] = (),
        retry_on: tuple[type[Exception], ...] = TRANSIENT,
    ) -> T:
        """Run ``attempt()`` under :meth:`guard`. An idempotent call is tried up to
        ``policy.retry_attempts`` times on a transient failure (``retry_on``), with
        exponential back-off and jitter; a refusal (open circuit, full bulkhead) is never
        retried here: it answers at once. A call that is not idempotent is tried once."""
        policy = self.policy(dependency)
        if not idempotent or policy.retry_attempts <= 1:
            async with self.guard(dependency, key=key, exclude=exclude):
                return await attempt()
        retrying = stamina.retry_context(
            on=retry_on,
            attempts=policy.retry_attempts,
            timeout=None,
            wait_initial=policy.retry_initial_seconds,
            wait_max=policy.retry_max_seconds,
            wait_jitter=policy.retry_initial_seconds,
        )
        async for try_ in retrying:
            with try_:
                if try_.num > 1:
                    metrics.record_retry(dependency)
                async with self.guard(dependency, key=key, exclude=exclude):
                    return await attempt()
        raise AssertionError("unreachable: stamina re-raises the last failure")  # pragma: no cover
