"""One Redis connection pool per process (full mode); None on the embedded default.

``STOREFRONT_REDIS_URL`` is a plain ``redis://`` URL or a Sentinel address,
``redis+sentinel://h1:26379,h2:26379,h3:26379/service[/db]`` (decision 0176): the pool then asks
the sentinels for the master of ``service`` whenever it opens a connection, so after a failover
new connections go to the new master, and a connection still open to a demoted master is
dropped on its first READONLY reply.

Finding the master is bounded like any Redis call of the app: the sentinels are asked all at
once, each once (no client retries: the list of sentinels is the retry), and the first valid
answer wins; a lookup that has no answer within ``SENTINEL_TIMEOUT_SECONDS`` fails with
``MasterNotFoundError`` (a ``ConnectionError``, which the cache, the rate limiter and the
readiness checks read as "Redis is away"). redis-py's own lookup asked the sentinels in turn,
each with its client's default retries and backoff: with no sentinel answering, the first
command took 8-13 s here (plain ``redis://`` to a closed port: milliseconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from storefront.kit.multihost import SentinelAddress, is_sentinel_url, parse_sentinel_url

MAX_CONNECTIONS = 64
# how long a caller waits for a pooled connection when all are busy: as long as one command
# may take, so a burst queues briefly instead of failing
POOL_WAIT_SECONDS = 1.0
# the whole master lookup (every sentinel asked at once) and each sentinel's connect and reply
SENTINEL_TIMEOUT_SECONDS = 0.5


class BoundedSentinel(Sentinel):
    """Sentinels asked concurrently, each once, the lookup bounded by ``lookup_timeout``."""

    def __init__(
        self, sentinels: list[tuple[str, int]], *, lookup_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self.lookup_timeout = lookup_timeout

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        async def ask(sentinel: Redis) -> tuple[str, int]:
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters = await sentinel.sentinel_masters()
            except (RedisError, OSError) as exc:
                raise MasterNotFoundError(f"{where}: {type(exc).__name__} {exc}") from exc
            state = masters.get(service_name) if isinstance(masters, dict) else None
            if not state or not self.check_master_state(state, service_name):
                raise MasterNotFoundError(f"{where}: no usable master")
            return str(state["ip"]), int(state["port"])

        asking = [asyncio.ensure_future(ask(sentinel)) for sentinel in self.sentinels]
        errors: list[str] = []
        try:
            async with asyncio.timeout(self.lookup_timeout):
                for answer in asyncio.as_completed(asking):
                    try:
                        return await answer
                    except MasterNotFoundError as exc:
                        errors.append(str(exc))
        except TimeoutError:
            errors.append(f"no other answer within {self.lookup_timeout:g} s")
        finally:
            for task in asking:
                task.cancel()
            await asyncio.gather(*asking, return_exceptions=True)
        raise MasterNotFoundError(f"No master found for {service_name!r}: {'; '.join(errors)}")


class FollowingSentinelConnection(SentinelManagedConnection):
    """A connection that asks the sentinels where the master is whenever it (re)connects.

    redis-py's Sentinel connection resolves the address only in ``connect()``; a command
    sent on a dropped connection reconnects through ``connect_check_health()`` instead, to
    the address it had: a single-connection client (the response cache's generation reader,
    ``Redis.client()``) or a retried command kept dialling the dead master after a failover,
    and the cache bypassed Redis for good. Here every reconnect goes through ``connect()``."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]

    async def connect_to(self, address: tuple[str, int]) -> None:
        self.host, self.port = address
        await Connection.connect_check_health(
            self, check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )


class FollowingSentinelSSLConnection(FollowingSentinelConnection, SSLConnection):
    pass


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection like the plain one (see
    :func:`create_redis`) and closes its clients of the sentinels with itself."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


def create_pool(
    url: str,
    *,
    max_connections: int | None = MAX_CONNECTIONS,
    timeout: float | None = POOL_WAIT_SECONDS,
    socket_timeout: float | None = 1.0,
    sentinel_timeout: float = SENTINEL_TIMEOUT_SECONDS,
) -> BlockingConnectionPool:
    """A blocking pool on ``url``: a plain Redis URL or a Sentinel address.

    Blocking: more concurrent callers than connections wait for one to come back (the plain
    pool raises MaxConnectionsError, which the rate limiter and the cache read as "Redis is
    down" and fall back from, under exactly the load they exist for). ``socket_timeout``:
    None for a pool whose commands block on purpose (the job stream's XREADGROUP)."""
    # RESP2 explicitly: redis-py 8 defaults to RESP3, whose push messages change how
    # client-side caching invalidations arrive; every feature here is written for RESP2.
    options: dict[str, Any] = {
        "protocol": 2,
        "socket_connect_timeout": 1.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 15,
        "max_connections": max_connections,
        "timeout": timeout,
    }
    if is_sentinel_url(url):
        return sentinel_pool(parse_sentinel_url(url), sentinel_timeout=sentinel_timeout, **options)
    return BlockingConnectionPool.from_url(url, **options)


def sentinel_pool(
    address: SentinelAddress,
    *,
    sentinel_timeout: float = SENTINEL_TIMEOUT_SECONDS,
    **options: Any,
) -> BlockingSentinelConnectionPool:
    """``sentinel_timeout`` bounds the whole master lookup (:class:`BoundedSentinel`); each
    sentinel's connect and reply are allowed as long."""
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": sentinel_timeout,
        "socket_timeout": sentinel_timeout,
        "protocol": 2,
        # one attempt per sentinel and lookup: the other sentinels are the retry
        "retry": Retry(NoBackoff(), 0),
    }
    if address.sentinel_password is not None:
        sentinel_options["password"] = address.sentinel_password
    sentinel = BoundedSentinel(
        list(address.sentinels), lookup_timeout=sentinel_timeout, sentinel_kwargs=sentinel_options
    )
    connection_class: type[Connection] = (
        FollowingSentinelSSLConnection if address.tls else FollowingSentinelConnection
    )
    return BlockingSentinelConnectionPool(  # type: ignore[no-untyped-call]
        address.service,
        sentinel,
        db=address.db,
        username=address.username,
        password=address.password,
        connection_class=connection_class,
        **options,
    )


def create_redis(url: str, *, sentinel_timeout: float = SENTINEL_TIMEOUT_SECONDS) -> Redis:
    """The process's client on ``url``; it owns the pool (aclose() closes it)."""
    return Redis.from_pool(create_pool(url, sentinel_timeout=sentinel_timeout))
