"""argon2id password hashing, off the event loop, with admission control (decision 0134).

argon2 is expensive by design, so a flood of sign-ins must not take the process with it:

- hashes run on a thread pool of their own (``max_threads`` threads), never the event loop's
  default executor nor anyio's shared worker threads, so DNS look-ups, aiosqlite and other
  ``to_thread`` users never wait behind a hash. argon2-cffi releases the GIL while it
  hashes, so the event loop keeps serving meanwhile;
- on Linux those threads (and the lane threads argon2 starts from them) run at a lower CPU
  priority (``nice``): when hashes and requests compete for the cores, requests win and
  hashes take longer, rather than every other request slowing down;
- at most ``max_threads`` hashes run at once; up to ``max_waiting`` more wait, each for at
  most ``max_wait_seconds``. Past either bound the hash is refused at once with
  :class:`PasswordHashingBusy` (503 + Retry-After): the caller has changed nothing yet,
  so a refused sign-in counts no failure and starts no session;
- a hash that has not finished ``max_run_seconds`` after it got its thread (None: no bound;
  the settings' ``auth.hashing_timeout_ms``, 3 s, in the app) is refused the
  same way (decision 0207): at the lower priority, on cores busy with other work, a hash
  can take many times its usual time (20-30 s measured after a database failover), and the
  client would time out not knowing whether its sign-in happened. The hash runs on and keeps
  its thread until it ends (argon2 cannot be interrupted), so the threads stay the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TypeVar

import anyio
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from storefront.kit.errors import PasswordHashingBusy
from storefront.telemetry import metrics

T = TypeVar("T")
BUSY = "Too many sign-ins at once; try again in a moment."


def _lower_priority(nice: int) -> Callable[[], None]:
    def initializer() -> None:
        # Linux keeps a nice value per thread (and a thread argon2 starts inherits it);
        # elsewhere setpriority would lower the whole process, so it is left alone there
        if nice and sys.platform == "linux":
            with contextlib.suppress(OSError):  # a sandbox that forbids it: run unchanged
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    return initializer


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_kib: int = 65536,
        parallelism: int = 4,
        max_threads: int = 4,
        max_waiting: int = 4,
        max_wait_seconds: float = 0.5,
        max_run_seconds: float | None = None,
        nice: int = 19,
    ) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
        )
        self._executor = ThreadPoolExecutor(
            max_threads, thread_name_prefix="password-hashing", initializer=_lower_priority(nice)
        )
        # one token per thread: a holder has a thread of the pool to itself
        self._admission = anyio.CapacityLimiter(max_threads)
        self._max_waiting = max_waiting
        self._max_wait = max_wait_seconds
        # how long a hash may run once it has its thread (read at each hash; None: no bound)
        self.max_run_seconds = max_run_seconds
        self._dummy: str | None = None

    @property
    def running(self) -> int:
        """Hashes holding a thread."""
        return int(self._admission.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Hashes waiting for a thread."""
        return self._admission.statistics().tasks_waiting

    @property
    def saturated(self) -> bool:
        """True when a hash asked for now would be refused at once (every thread busy and the
        waiting line full): a caller may refuse before doing any work of its own."""
        return self._admission.available_tokens < 1 and self.waiting >= self._max_waiting

    def refuse_if_saturated(self, operation: str) -> None:
        if self.saturated:
            self._refuse(operation)

    def _refuse(self, operation: str) -> NoReturn:
        metrics.record_password_hashing_refusal(operation)
        # 1 or 2 seconds: refused clients do not all come back in the same instant
        raise PasswordHashingBusy(BUSY, retry_after=1 + secrets.randbelow(2))

    async def _run(self, operation: str, fn: Callable[..., T], *args: object) -> T:
        self.refuse_if_saturated(operation)
        admission, slot = self._admission, object()
        try:
            with anyio.fail_after(self._max_wait):
                await admission.acquire_on_behalf_of(slot)
        except TimeoutError:
            self._refuse(operation)
        try:
            future = asyncio.wrap_future(self._executor.submit(fn, *args))
        except BaseException:
            admission.release_on_behalf_of(slot)
            raise

        def done(finished: asyncio.Future[T]) -> None:
            # the slot is given back when the thread is done with the hash, not when the
            # caller stops waiting (cancelled): never more than max_threads hashes run
            if not finished.cancelled():
                finished.exception()  # retrieved, also when nobody awaits it any more
            admission.release_on_behalf_of(slot)

        future.add_done_callback(done)
        try:
            with anyio.fail_after(self.max_run_seconds):
                return await asyncio.shield(future)
        except TimeoutError:
            # the outcome is dropped: nothing was decided on this password
            self._refuse(operation)

    async def hash(self, password: str) -> str:
        return await self._run("hash", self._hash.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Return (ok, new_hash) where new_hash is set when the parameters changed."""
        return await self._run("verify", self._hash.verify_and_update, password, hashed)

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real check, for unknown accounts (no user enumeration)."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy)

    def close(self) -> None:
        """Let the pool's threads end (a hash still running finishes first)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
