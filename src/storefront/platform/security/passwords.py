"""argon2id password hashing, off the event loop on a bounded thread budget."""

from __future__ import annotations

import secrets

import anyio
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_kib: int = 65536,
        parallelism: int = 4,
        max_threads: int = 4,
    ) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
        )
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password, limiter=self._limiter)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Return (ok, new_hash) where new_hash is set when the parameters changed."""
        return await anyio.to_thread.run_sync(
            self._hash.verify_and_update, password, hashed, limiter=self._limiter
        )

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real check, for unknown accounts (no user enumeration)."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy)
