"""Process-wide resources, created and closed by the app's lifespan, handed out typed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
    expected_schema_revision: str | None = None
    shutting_down: bool = False
