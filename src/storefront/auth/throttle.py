"""Brute-force throttling for sign-in and MFA guessing (not general API rate limiting).

Failures are counted per key (an account, a client address) in a sliding window. Once a
key has ``max_failures`` failures, it is locked for ``base_delay`` seconds, doubling with
each further failure up to ``max_delay``: a growing back-off. A success resets a key.
Counters live in Redis when configured (every process shares them), in-process otherwise.
If Redis is down the check raises, and callers answer 503: sign-in fails closed rather
than letting unthrottled guessing through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int
    window_seconds: int
    base_delay_seconds: int
    max_delay_seconds: int

    def delay(self, failures: int) -> int:
        """Lock-out after the given number of failures (0 while under the limit)."""
        if failures < self.max_failures:
            return 0
        exponent = min(failures - self.max_failures, 30)
        return int(min(self.max_delay_seconds, self.base_delay_seconds * 2**exponent))


# Lua keeps "count the failure, then maybe lock" atomic across processes.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local delay = 0
if n >= tonumber(ARGV[3]) then
  local e = math.min(n - tonumber(ARGV[3]), 30)
  delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[2]) * (2 ^ e))
  redis.call('SET', KEYS[2], '1', 'EX', math.floor(delay))
  redis.call('EXPIRE', KEYS[1], math.max(tonumber(ARGV[1]), math.floor(delay) * 2))
end
return n
"""


@dataclass
class _Local:
    failures: int = 0
    window_ends: float = 0.0
    locked_until: float = 0.0


class Throttle:
    def __init__(self, redis: Redis | None, prefix: str, name: str, policy: ThrottlePolicy):
        self._redis = redis
        self._prefix = f"{prefix}throttle:{name}:"
        self.policy = policy
        self._local: dict[str, _Local] = {}

    def _keys(self, key: str) -> tuple[str, str]:
        return self._prefix + "n:" + key, self._prefix + "lock:" + key

    async def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it is not locked."""
        if self._redis is not None:
            ttl = await self._redis.ttl(self._keys(key)[1])
            return max(0, int(ttl))
        entry = self._local.get(key)
        if entry is None:
            return 0
        return max(0, math.ceil(entry.locked_until - time.monotonic()))

    async def failure(self, key: str) -> int:
        """Count one failure; returns the failures counted in the window."""
        p = self.policy
        if self._redis is not None:
            counter, lock = self._keys(key)
            args = (p.window_seconds, p.base_delay_seconds, p.max_failures, p.max_delay_seconds)
            result = self._redis.eval(_FAIL, 2, counter, lock, *args)
            return int(await result)
        now = time.monotonic()
        if len(self._local) > 50_000:
            self._local = {
                k: v for k, v in self._local.items() if max(v.window_ends, v.locked_until) > now
            }
        entry = self._local.setdefault(key, _Local())
        if entry.window_ends <= now:
            entry.failures = 0
        entry.failures += 1
        delay = p.delay(entry.failures)
        entry.window_ends = now + max(p.window_seconds, 2 * delay)
        if delay:
            entry.locked_until = now + delay
        return entry.failures

    async def reset(self, key: str) -> None:
        if self._redis is not None:
            await self._redis.delete(*self._keys(key))
            return
        self._local.pop(key, None)
