"""One settings tree for the whole service (env prefix ``STOREFRONT_``).

Nested groups are read from ``STOREFRONT_<GROUP>__<FIELD>``; the handful of URLs that
operators set all the time also have flat aliases (``STOREFRONT_DATABASE_URL``,
``STOREFRONT_PORT``...). In production the tree refuses unsafe values and fails fast.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-development-only-secret-0123456789"  # noqa: S105


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class DatabaseSettings(BaseModel):
    pool_size: int = Field(default=10, ge=1, le=200)
    max_overflow: int = Field(default=5, ge=0, le=200)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    pool_recycle_seconds: int = Field(default=1800, ge=-1)
    pool_pre_ping: bool = True
    statement_timeout_ms: int = Field(default=5000, ge=0, description="PostgreSQL only; 0 = off")
    echo: bool = False


class AuthSettings(BaseModel):
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "storefront"
    jwt_audience: str = "storefront-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    hashing_threads: int = Field(default=4, ge=1, le=64)


class IdempotencySettings(BaseModel):
    ttl_hours: int = Field(default=24, ge=1)
    lock_timeout_seconds: int = Field(default=60, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOREFRONT_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
        frozen=True,
        # a refusal must not print its input: it holds the JWT secret and database passwords
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.development
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    graceful_shutdown_seconds: int = Field(default=20, ge=0)
    database_url: str = "sqlite+aiosqlite:///./var/storefront.db"
    redis_url: str | None = None
    redis_prefix: str = Field(default="storefront:", min_length=1, max_length=64)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("cors_origins", "trusted_proxies"):
                raw = data.get(name)
                if isinstance(raw, str):
                    data = {**data, name: [o.strip() for o in raw.split(",") if o.strip()]}
        return data

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # raises ValueError: a clear error
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is not Environment.production:
            return self
        problems: list[str] = []
        secret = self.auth.jwt_secret.get_secret_value()
        if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
            problems.append(
                "STOREFRONT_AUTH__JWT_SECRET must be set to a random value of 32+ chars"
            )
        if self.debug:
            problems.append("STOREFRONT_DEBUG must be false in production")
        if self.database.echo:
            problems.append("SQL echo logs parameters; STOREFRONT_DATABASE__ECHO must be false")
        if "*" in self.cors_origins:
            problems.append("STOREFRONT_CORS_ORIGINS must list origins explicitly, not '*'")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
