"""Revoked sessions, so their access tokens stop working at once (not when they expire).

An entry lives as long as the longest access token of that session could (the access-token
lifetime), then disappears on its own. With Redis every process sees a revocation at once;
on the embedded default (no Redis) the list is in-process. If Redis is down, checking fails
closed: requests with access tokens get 503 rather than honouring a possibly revoked token.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis


class RevocationList:
    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}revoked-sid:"
        self._local: dict[str, float] = {}

    async def revoke(self, session_id: str, ttl_seconds: int) -> None:
        ttl = max(1, int(ttl_seconds))
        if self._redis is not None:
            await self._redis.set(self._prefix + session_id, b"1", ex=ttl)
            return
        now = time.monotonic()
        if len(self._local) > 10_000:  # forget what has expired
            self._local = {k: v for k, v in self._local.items() if v > now}
        self._local[session_id] = now + ttl

    async def is_revoked(self, session_id: str) -> bool:
        if self._redis is not None:
            return bool(await self._redis.exists(self._prefix + session_id))
        until = self._local.get(session_id)
        return until is not None and until > time.monotonic()
