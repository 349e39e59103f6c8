"""Two-level cache of serialized representations: in-process L1, Redis L2.

An entry is the exact bytes of a representation, its strong ETag (computed once, from those
bytes) and a little metadata (a next cursor...), so a hit serializes nothing.

Invalidation by tag, with versioned keys. Every tag (``product:<id>``, ``catalog:<shop>``)
has a *generation*: a random token kept in Redis (in-process on the embedded default). A
lookup first reads the generations of the entry's tags and looks the entry up under its key
*plus those generations*; a write replaces the generations of the tags it touched once its
transaction has committed, before the client is answered. So:

- no process can serve an entry filled before the write: its key names the old generation,
  and every lookup (L1 included) reads the current generation from Redis first;
- the race "a reader fills the cache with the old row after the writer invalidated" cannot
  leave a stale entry reachable: the reader read the generations *before* querying, so it
  files what it read under the old generation (or, if it read the new one, the write had
  committed before its query started);
- generations are random, never counters, so a Redis restart cannot make an old L1 entry's
  key current again.

Generation reads are batched (decision 0135). A lookup never uses a generation read that
Redis may have handled before the lookup began: it joins the *next* read, which is sent
when the one in flight (if any) has come back. So there is at most one generation read in
flight per process, and every lookup that arrives meanwhile shares the following one: one
``MGET`` per batch, not per hit. The busier the process, the larger the batches and the
cheaper each hit; no lease, no subscription, no clock, and writes do not wait.

Misses of one key are computed once per process (single-flight, which also coalesces
identical concurrent requests) and, across processes, once per lock period (a short Redis
lock; the others wait for the entry to appear in L2).

Redis down: lookups read through to the database (``bypass``), the process keeps serving,
and it is counted. A failed invalidation is kept and retried in the background; until it
succeeds this process serves nothing from the cache. Stale data after a Redis outage is
bounded by the entry TTL (an entry outlives a lost invalidation only if the writing process
dies before Redis comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from cachetools import LRUCache, TTLCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from storefront.cache.singleflight import SingleFlight
from storefront.infra.availability import dependency, spawn
from storefront.kit.etag import strong_etag
from storefront.telemetry import metrics

logger = logging.getLogger("storefront.cache")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
GENERATION_TTL_SECONDS = 7 * 24 * 3600
DOWN_BACKOFF_SECONDS = 1.0
RETRY_INVALIDATION_SECONDS = 0.5
_HEADER = struct.Struct(">4sHH")
_MAGIC = b"SFc1"


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    etag: str
    meta: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        etag = self.etag.encode()
        meta = orjson.dumps(dict(self.meta)) if self.meta else b""
        return _HEADER.pack(_MAGIC, len(etag), len(meta)) + etag + meta + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        if len(raw) < _HEADER.size:
            return None
        magic, etag_len, meta_len = _HEADER.unpack_from(raw)
        if magic != _MAGIC:
            return None
        start = _HEADER.size
        etag = raw[start : start + etag_len].decode()
        start += etag_len
        meta = orjson.loads(raw[start : start + meta_len]) if meta_len else {}
        return cls(raw[start + meta_len :], etag, meta)


def make_entry(body: bytes, meta: Mapping[str, str] | None = None) -> Entry:
    return Entry(body, strong_etag(body), meta or {})


Compute = Callable[[], Awaitable[Entry]]


@dataclass(slots=True)
class CacheStats:
    """Counters for tests, the benchmark and operators (Prometheus has hit/miss per name)."""

    hits_l1: int = 0
    hits_l2: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    redis_errors: int = 0
    invalidations: int = 0
    invalidation_failures: int = 0
    generation_reads: int = 0  # MGETs of tag generations (each shared by concurrent lookups)


class _LocalGenerations:
    """Tag generations of the embedded default (one process, no Redis)."""

    def __init__(self) -> None:
        self._gens: LRUCache[str, str] = LRUCache(maxsize=200_000)
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count()

    def _new(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"

    def get(self, tags: Sequence[str]) -> list[str]:
        out = []
        for tag in tags:
            gen = self._gens.get(tag)
            if gen is None:
                gen = self._gens[tag] = self._new()
            out.append(gen)
        return out

    def bump(self, tags: Iterable[str]) -> None:
        for tag in tags:
            self._gens[tag] = self._new()


class _GenerationReads:
    """Batched reads of tag generations from Redis, at most one in flight.

    A lookup joins the next read, never the one in flight (that one may have been handled
    by Redis before the lookup began, so before a write it must see). The read is sent by a
    task of its own, when the one in flight has come back: every lookup that arrived
    meanwhile shares it. A lookup that goes away (a client disconnect) leaves the others
    their read. ``read`` returns None when Redis must not be trusted now (it failed)."""

    def __init__(self, read: Callable[[list[str]], Awaitable[list[str] | None]]) -> None:
        self._read = read
        self._tags: dict[str, None] = {}  # the next read's tags, in order, once each
        self._waiters: list[asyncio.Future[dict[str, str] | None]] = []
        self.task: asyncio.Task[None] | None = None

    async def get(self, tags: Sequence[str]) -> list[str] | None:
        loop = asyncio.get_running_loop()
        task = self.task
        if task is None or task.done() or task.get_loop() is not loop:
            if task is not None and task.get_loop() is not loop:  # a new event loop (tests)
                self._tags, self._waiters = {}, []
            self.task = spawn(self._run(), name="storefront-cache-generations")
        waiter: asyncio.Future[dict[str, str] | None] = loop.create_future()
        self._tags.update(dict.fromkeys(tags))
        self._waiters.append(waiter)
        gens = await waiter
        return None if gens is None else [gens[tag] for tag in tags]

    async def _run(self) -> None:
        # no await between the last check of the waiters and the task's end: a lookup that
        # finds this task not done is sure to be answered by it
        while self._waiters:
            waiters, tags = self._waiters, list(self._tags)
            self._waiters, self._tags = [], {}
            try:
                values = await self._read(tags)
            except asyncio.CancelledError:  # shut down: the lookups read through
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                raise
            except Exception as exc:  # noqa: BLE001 - not Redis's (``read`` takes those): each lookup raises it
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            gens = None if values is None else dict(zip(tags, values, strict=True))
            for waiter in waiters:
                if not waiter.done():  # not cancelled meanwhile
                    waiter.set_result(gens)


def _size_of(entry: Entry) -> int:
    return len(entry.body) + len(entry.etag) + 200


class ResponseCache:
    def __init__(
        self,
        *,
        redis: Redis | None,
        prefix: str,
        enabled: bool = True,
        ttl_seconds: int = 300,
        local_max_bytes: int = 64 * 1024 * 1024,
        lock_ms: int = 2000,
    ) -> None:
        self.redis = redis
        self.enabled = enabled
        self.ttl_seconds = ttl_seconds
        self.lock_ms = lock_ms
        self.stats = CacheStats()
        self._prefix = f"{prefix}cache:"
        self._l1: TTLCache[str, Entry] = TTLCache(
            maxsize=local_max_bytes, ttl=ttl_seconds, getsizeof=_size_of
        )
        self._local = _LocalGenerations()
        self._flights: SingleFlight[tuple[Entry, str]] = SingleFlight()
        self._down_until = 0.0
        self._pending: set[str] = set()
        self._retry_task: asyncio.Task[None] | None = None
        # generation reads on a connection of their own (from the process's pool, held): a
        # pool emptied by other work cannot make the cache distrust Redis for a moment
        self._reader = redis.client() if redis is not None else None
        self._reads = _GenerationReads(self._redis_generations)
        self._closed = False

    # --- reads ---------------------------------------------------------------------------
    async def get_or_compute(
        self, name: str, key: str, tags: Sequence[str], compute: Compute
    ) -> tuple[Entry, str]:
        """The entry for ``key`` and where it came from: ``hit-l1``, ``hit-l2``, ``miss``,
        ``coalesced`` (joined a computation in flight), ``bypass`` (Redis down) or ``off``.
        ``name`` is a fixed label (``product``, ``listing``...) for the metrics."""
        if not self.enabled:
            return await compute(), "off"
        gens = await self._current_generations(tags)
        if gens is None:
            return await self._bypass(name, compute)
        vkey = f"{key}#{'.'.join(gens)}"
        entry = self._l1.get(vkey)
        if entry is not None:
            self.stats.hits_l1 += 1
            metrics.record_cache(name, hit=True)
            return entry, "hit-l1"
        (entry, source), joined = await self._flights.do(vkey, lambda: self._fill(vkey, compute))
        if joined:
            self.stats.coalesced += 1
            source = "coalesced"
        metrics.record_cache(name, hit=source != "miss")
        return entry, source

    async def peek(self, name: str, key: str, tags: Sequence[str]) -> Entry | None:
        """The entry for ``key`` if this process holds it in L1 under the current
        generations, else None; never computes, never waits on a fill (the cache-hit fast
        path: on None the request goes the ordinary way, which counts the miss)."""
        if not self.enabled:
            return None
        gens = await self._current_generations(tags)
        if gens is None:
            return None
        entry = self._l1.get(f"{key}#{'.'.join(gens)}")
        if entry is not None:
            self.stats.hits_l1 += 1
            metrics.record_cache(name, hit=True)
        return entry

    async def _current_generations(self, tags: Sequence[str]) -> list[str] | None:
        """The tags' generations, read by Redis after this call began (batched with the
        lookups of the same moment); None when Redis must not be trusted now (down, or an
        invalidation owed)."""
        if self.redis is None:
            return self._local.get(tags)
        if not self._redis_usable():
            return None
        return await self._reads.get(tags)

    async def _bypass(self, name: str, compute: Compute) -> tuple[Entry, str]:
        self.stats.bypassed += 1
        metrics.record_cache(name, hit=False)
        return await compute(), "bypass"

    async def _fill(self, vkey: str, compute: Compute) -> tuple[Entry, str]:
        redis = self.redis
        if redis is None:
            entry = await compute()
            self.stats.misses += 1
            self._l1[vkey] = entry
            return entry, "miss"
        l2key = f"{self._prefix}e:{vkey}"
        lock_key = f"{self._prefix}lock:{vkey}"
        locked = False
        try:
            found = await self._from_l2(redis, l2key)
            if found is not None:
                self._l1[vkey] = found
                self.stats.hits_l2 += 1
                return found, "hit-l2"
            locked = bool(await redis.set(lock_key, b"1", nx=True, px=self.lock_ms))
            if not locked:
                found = await self._await_other_process(redis, l2key, lock_key)
                if found is not None:
                    self._l1[vkey] = found
                    self.stats.hits_l2 += 1
                    return found, "hit-l2"
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            self.stats.bypassed += 1
            return await compute(), "bypass"
        try:
            entry = await compute()
        except BaseException:
            if locked:  # a 404 (or a failure): let the waiters compute now, not after the lock
                with contextlib.suppress(*REDIS_ERRORS):
                    await redis.delete(lock_key)
            raise
        self.stats.misses += 1
        self._l1[vkey] = entry
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.set(l2key, entry.encode(), ex=self.ttl_seconds)
            if locked:
                pipe.delete(lock_key)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
        return entry, "miss"

    async def _from_l2(self, redis: Redis, l2key: str) -> Entry | None:
        raw: bytes | None = await redis.get(l2key)  # type: ignore[assignment]
        return Entry.decode(raw) if raw else None

    async def _await_other_process(self, redis: Redis, l2key: str, lock_key: str) -> Entry | None:
        """Another process holds the fill lock: wait (bounded) for its entry to land; give
        up at once if it released the lock without one (its computation failed)."""
        deadline = time.monotonic() + self.lock_ms / 1000
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            pipe = redis.pipeline(transaction=False)
            pipe.get(l2key)
            pipe.exists(lock_key)
            raw, still_locked = await pipe.execute()
            if raw:
                return Entry.decode(raw)
            if not still_locked:
                return None
            delay = min(delay * 2, 0.05)
        return None

    async def _redis_generations(self, tags: Sequence[str]) -> list[str] | None:
        """One batch's generations (missing ones created); None if Redis failed."""
        redis = self._reader
        if redis is None or self._closed:
            return None
        keys = [self._gen_key(t) for t in tags]
        self.stats.generation_reads += 1
        try:
            values: list[bytes | None] = await redis.mget(keys)  # type: ignore[assignment]
            if any(v is None for v in values):
                pipe = redis.pipeline(transaction=False)
                for k, v in zip(keys, values, strict=True):
                    if v is None:
                        pipe.set(k, secrets.token_hex(8), nx=True, ex=GENERATION_TTL_SECONDS)
                pipe.mget(keys)
                values = (await pipe.execute())[-1]
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return None
        return [v.decode() if v is not None else "-" for v in values]

    def _gen_key(self, tag: str) -> str:
        return f"{self._prefix}g:{tag}"

    # --- writes --------------------------------------------------------------------------
    async def invalidate(self, tags: Iterable[str]) -> None:
        """Make every entry carrying one of ``tags`` unreachable, in every process.

        Called after the write's transaction committed and before the client is answered.
        Never raises: a failure is counted, retried in the background, and until then this
        process serves nothing from the cache."""
        tags = set(tags)
        if not tags:
            return
        self.stats.invalidations += 1
        self._local.bump(tags)
        if self.redis is None:
            return
        self._pending |= tags
        await self._flush_pending()

    async def _flush_pending(self) -> bool:
        redis = self.redis
        if redis is None or not self._pending:
            return True
        batch = set(self._pending)
        try:
            pipe = redis.pipeline(transaction=False)
            for tag in sorted(batch):
                pipe.set(self._gen_key(tag), secrets.token_hex(8), ex=GENERATION_TTL_SECONDS)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            self.stats.invalidation_failures += 1
            self._redis_failed(exc)
            logger.warning("cache invalidation failed (%s); retrying", type(exc).__name__)
            self._start_retry()
            return False
        self._pending -= batch
        return True

    def _start_retry(self) -> None:
        if self._retry_task is None or self._retry_task.done():
            # a clean context: not the request id of the request that noticed the failure
            self._retry_task = spawn(self._retry_forever(), name="storefront-cache-retry")

    async def _retry_forever(self) -> None:
        while self._pending:
            await asyncio.sleep(RETRY_INVALIDATION_SECONDS)
            await self._flush_pending()

    # --- Redis health --------------------------------------------------------------------
    def _redis_failed(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        redis = dependency("redis")
        if redis.is_up:  # once per outage, not once a second (decision 0110)
            logger.warning("cache: Redis unavailable (%s); reading through", type(exc).__name__)
        redis.down(type(exc).__name__)
        self._down_until = time.monotonic() + DOWN_BACKOFF_SECONDS

    def _redis_usable(self) -> bool:
        if self._pending:  # an invalidation this process owes: don't trust the cache yet
            return False
        return time.monotonic() >= self._down_until

    async def aclose(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        for task in (self._reads.task, self._retry_task):
            if task is not None and not task.done() and task.get_loop() is loop:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._reader is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._reader.aclose()  # its connection back to the pool
