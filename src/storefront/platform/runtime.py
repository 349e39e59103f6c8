"""Process-wide resources, created and closed by the app's lifespan, handed out typed.

``redis`` is one connection pool per process, or None on the embedded default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storefront.platform.cache import ResponseCache
from storefront.platform.crypto import PersonalDataVault
from storefront.platform.http.client_address import Network
from storefront.platform.idempotency import IdempotencyStore
from storefront.platform.jobs import JobQueue
from storefront.platform.mail import Mailer
from storefront.platform.outbound import OutboundClient
from storefront.platform.ratelimit import DistributedRateLimiter
from storefront.platform.security.kit import SecurityKit
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.tokens import TokenService
from storefront.settings import Settings


@dataclass(slots=True)
class Runtime:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    passwords: PasswordHasher
    tokens: TokenService
    idempotency: IdempotencyStore
    security: SecurityKit
    vault: PersonalDataVault  # personal data at rest: seal, open, destroy (crypto-shredding)
    redis: Redis | None = None
    # the response cache (L1 in-process, L2 on ``redis``); L1 only by default
    cache: ResponseCache = field(default_factory=lambda: ResponseCache(redis=None, prefix="-"))
    redis_prefix: str = "storefront:"
    trusted_proxies: tuple[Network, ...] = ()
    expected_schema_revision: str | None = None
    shutting_down: bool = False
    rate_limiter: DistributedRateLimiter | None = None  # set by the lifespan
    jobs: JobQueue | None = None  # background jobs (after-commit enqueueing)
    mailer: Mailer | None = None  # outgoing SMTP, used by jobs
    http: OutboundClient | None = None  # the one outgoing HTTP client (webhooks)
    settings: Settings | None = None  # the configuration it was built from (set by build_runtime)

    async def aclose(self) -> None:
        """Close what the runtime holds (the lifespan, the worker and CLI commands alike);
        jobs are shut down by whoever started them."""
        if self.rate_limiter is not None:
            await self.rate_limiter.aclose()
        await self.cache.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
