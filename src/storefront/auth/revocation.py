"""Revoked sessions and accounts, so their access tokens stop working at once (not when they
expire), on every process, without a database query.

Two kinds of entry: a session (logout, a password change ending the other sessions, a
revoked or capped session, a reused refresh token) and an account (erasure: every token of
the account, whatever its session). An entry lives as long as the longest access token it
blocks could (the access-token lifetime), then disappears on its own.

With Redis every process sees a revocation at once: a request checks its session and its
account with one ``EXISTS`` of both keys (one round trip, no SQL), so there is no window in
which another process still honours the token. On the embedded default (no Redis) there is
one process and the list is in-process, which is just as immediate. If Redis is down,
checking fails closed: requests with access tokens get 503 rather than honouring a possibly
revoked token.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis


class RevocationList:
    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}revoked-sid:"
        self._user_prefix = f"{prefix}revoked-user:"
        self._local: dict[str, float] = {}

    async def revoke(self, session_id: str, ttl_seconds: int) -> None:
        await self._add(self._prefix + session_id, ttl_seconds)

    async def revoke_user(self, user_id: str, ttl_seconds: int) -> None:
        """Every access token of the account, issued before now or later (erasure)."""
        await self._add(self._user_prefix + user_id, ttl_seconds)

    async def _add(self, key: str, ttl_seconds: int) -> None:
        ttl = max(1, int(ttl_seconds))
        if self._redis is not None:
            await self._redis.set(key, b"1", ex=ttl)
            return
        now = time.monotonic()
        if len(self._local) > 10_000:  # forget what has expired
            self._local = {k: v for k, v in self._local.items() if v > now}
        self._local[key] = now + ttl

    async def is_revoked(self, session_id: str | None, user_id: str | None = None) -> bool:
        """Whether the session or the account was revoked (one round trip for both)."""
        keys = []
        if session_id is not None:
            keys.append(self._prefix + session_id)
        if user_id is not None:
            keys.append(self._user_prefix + user_id)
        if not keys:
            return False
        if self._redis is not None:
            return bool(await self._redis.exists(*keys))
        now = time.monotonic()
        return any(self._local.get(key, 0.0) > now for key in keys)
