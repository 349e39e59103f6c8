"""Why the test harness counts with the moving window (tests/conftest.py ``make_settings``).

The production default, limits' sliding-window counter, floors the previous window's weighted
count: with a budget of one a minute, a request just before a minute boundary and one just
after both pass. A CI run failed on exactly that (a 9 s stall carried the second request of
an export-budget test past the boundary). The moving window stores each hit and refuses it.
The clock is the limiter storage's own, driven here, so the boundary is crossed on purpose."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from limits.aio.storage import memory

from storefront.infra.ratelimit import DistributedRateLimiter, parse_policy

JUST_BEFORE_A_MINUTE = 60 * 29_000_000 + 59.8  # 0.2 s before a window boundary


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(JUST_BEFORE_A_MINUTE)
    monkeypatch.setattr(memory, "time", SimpleNamespace(time=c.time))
    return c


async def two_hits_across_a_boundary(strategy: str, clock: Clock) -> tuple[bool, bool]:
    limiter = DistributedRateLimiter(None, prefix="t:", strategy=strategy)  # type: ignore[arg-type]
    budget = parse_policy("expensive", "1/minute")
    first = await limiter.hit(budget, "user-1")
    clock.now += 0.4  # the next minute has begun
    second = await limiter.hit(budget, "user-1")
    return first[0].allowed, second[0].allowed


async def test_the_moving_window_refuses_the_second_hit_across_a_boundary(clock: Clock) -> None:
    assert await two_hits_across_a_boundary("moving-window", clock) == (True, False)


async def test_the_sliding_window_counter_admits_one_more_across_a_boundary(
    clock: Clock,
) -> None:
    """The approximation the production default accepts (cheap: two counters a key)."""
    assert await two_hits_across_a_boundary("sliding-window-counter", clock) == (True, True)
