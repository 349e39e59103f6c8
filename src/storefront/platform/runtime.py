"""Process-wide resources, created and closed by the app's lifespan, handed out typed.

``redis`` is one connection pool per process, or None on the embedded default.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storefront.platform.http.client_address import Network
from storefront.platform.idempotency import IdempotencyStore
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.tokens import TokenService


@dataclass(slots=True)
class Runtime:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    passwords: PasswordHasher
    tokens: TokenService
    idempotency: IdempotencyStore
    redis: Redis | None = None
    redis_prefix: str = "storefront:"
    trusted_proxies: tuple[Network, ...] = ()
    expected_schema_revision: str | None = None
    shutting_down: bool = False
