"""PasswordHasher's admission control and its threads (decision 0134), on real argon2.

Hashes are made slow on purpose (about a second) so that "while a hash runs" is a state the
tests can observe, never a timing they assert."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import anyio
import pytest

from storefront.auth.passwords import PasswordHasher
from storefront.kit.errors import PasswordHashingBusy

SLOW = {"time_cost": 16, "memory_kib": 32768, "parallelism": 1}
CHEAP = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


async def until(condition: object, what: str) -> None:
    for _ in range(2000):  # up to ~20 s on a loaded machine
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


async def test_past_the_threads_and_the_line_a_hash_is_refused_at_once() -> None:
    hasher = PasswordHasher(**SLOW, max_threads=1, max_waiting=0)
    try:
        first = asyncio.ensure_future(hasher.hash("first"))
        await until(lambda: hasher.running == 1, "the first hash holds the thread")
        with pytest.raises(PasswordHashingBusy) as refused:
            await hasher.verify("second", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
        assert not first.done(), "the refusal waited for the hash in flight"
        assert refused.value.status == 503
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert (await first).startswith("$argon2id$")
        assert hasher.running == 0
        await hasher.hash("again")  # the thread is free again
    finally:
        hasher.close()


async def test_a_cancelled_caller_keeps_its_thread_until_the_hash_is_done() -> None:
    """Otherwise a client that gives up would let one more hash start than there are
    threads, and the bound would leak one hash per impatient client."""
    hasher = PasswordHasher(**SLOW, max_threads=1, max_waiting=0)
    try:
        task = asyncio.ensure_future(hasher.hash("abandoned"))
        await until(lambda: hasher.running == 1, "the hash holds the thread")
        task.cancel()
        await asyncio.sleep(0.05)
        assert hasher.saturated, "the slot was given back while the thread still hashes"
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(PasswordHashingBusy):
            await hasher.hash("too soon")  # the abandoned hash still has the thread
        await until(lambda: hasher.running == 0, "the abandoned hash gives the thread back")
        await hasher.hash("next")
    finally:
        hasher.close()


async def test_a_hash_past_its_run_bound_is_refused_and_keeps_its_thread() -> None:
    """A hash still running ``max_run_seconds`` after it got its thread is answered 503 with
    Retry-After (a starved hash took 20-30 s after a database failover, past the client's
    timeout); the hash itself cannot be stopped, so its thread stays taken until it ends."""
    hasher = PasswordHasher(**SLOW, max_threads=1, max_waiting=0, max_run_seconds=0.01)
    try:
        with pytest.raises(PasswordHashingBusy) as refused:
            # without the bound this would wait for the whole hash and return it
            await hasher.hash("slow")
        assert refused.value.status == 503
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert hasher.running == 1, "the hash gave its thread back before it ended"
        with pytest.raises(PasswordHashingBusy):
            await hasher.hash("meanwhile")  # no second hash while the first still runs
        await until(lambda: hasher.running == 0, "the refused hash ends and frees its thread")
    finally:
        hasher.close()
    unbounded = PasswordHasher(**CHEAP, max_threads=1, max_waiting=0)
    try:
        assert (await unbounded.hash("no bound")).startswith("$argon2id$")
    finally:
        unbounded.close()


async def test_a_waiter_is_admitted_when_a_thread_frees_up() -> None:
    hasher = PasswordHasher(**SLOW, max_threads=1, max_waiting=1, max_wait_seconds=60)
    try:
        first = asyncio.ensure_future(hasher.hash("first"))
        await until(lambda: hasher.running == 1, "the first hash holds the thread")
        second = asyncio.ensure_future(hasher.hash("second"))
        await until(lambda: hasher.waiting == 1, "the second waits in line")
        with pytest.raises(PasswordHashingBusy):
            await hasher.hash("third")  # the line is full
        assert not first.done()
        assert (await first) != (await second)
    finally:
        hasher.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
async def test_hashes_run_on_threads_of_their_own_at_a_lower_priority() -> None:
    """The hashing threads are the hasher's own and run nice; the threads everything else
    uses (the event loop's default executor, anyio's worker threads) keep their priority
    and stay free while every hashing thread is busy."""
    before = set(threading.enumerate())
    hasher = PasswordHasher(**SLOW, max_threads=1, max_waiting=0, nice=7)
    try:
        running = asyncio.ensure_future(hasher.hash("slow"))
        await until(lambda: hasher.running == 1, "the hash holds the thread")
        hashing = [
            t
            for t in threading.enumerate()
            if t.name.startswith("password-hashing") and t not in before
        ]
        assert len(hashing) == 1
        assert hashing[0].native_id is not None
        assert nice_of(hashing[0].native_id) == 7

        def own_nice() -> int:
            return nice_of(threading.get_native_id())

        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, own_nice) == 0
        assert await anyio.to_thread.run_sync(own_nice) == 0
        assert nice_of(threading.get_native_id()) == 0  # the event loop's own thread
        assert not running.done(), "other threads waited for the hash"
        await running
    finally:
        hasher.close()


async def test_verify_answers_as_before() -> None:
    hasher = PasswordHasher(**CHEAP)
    try:
        hashed = await hasher.hash("correct horse")
        assert await hasher.verify("correct horse", hashed) == (True, None)
        assert (await hasher.verify("wrong", hashed))[0] is False
        stronger = PasswordHasher(time_cost=2, memory_kib=1024, parallelism=1)
        try:
            ok, new_hash = await stronger.verify("correct horse", hashed)
            assert ok
            assert new_hash is not None  # raised parameters: a new hash to store
        finally:
            stronger.close()
    finally:
        hasher.close()
