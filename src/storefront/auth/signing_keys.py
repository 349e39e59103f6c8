"""Asymmetric signing keys for access tokens, shared by every process through the database.

Each key is an Ed25519 key pair with a ``kid``. The newest key signs; every stored key
verifies, so a rotation signs no one out. Private keys are stored encrypted (SecretBox).
Processes reload the key set periodically and when they meet an unknown ``kid`` (at most
once per ``reload_interval`` for unknown kids, so random kids cannot hammer the database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import JSON, String, Text, delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from storefront.auditlog.log import record
from storefront.kit.db import Base, snapshot_session, utcnow
from storefront.kit.secretbox import SecretBox

ALGORITHM = "EdDSA"
STARTUP_LOAD_SECONDS = 5.0
UNKNOWN_KID_RELOAD = 5.0  # seconds between reloads triggered by unknown kids
logger = logging.getLogger("storefront.security.keys")


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_key: Mapped[str] = mapped_column(Text)  # PKCS#8 PEM, sealed with SecretBox
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey | None
    public_key: Ed25519PublicKey
    public_jwk: dict[str, Any]
    created_at: datetime


def generate_key(*, now: datetime | None = None) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(public))
    kid = secrets.token_urlsafe(12)
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return SigningKey(kid, private, public, jwk, now or utcnow())


class KeyRing:
    """The key set one process holds: the newest key signs, all of them verify."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._signing: SigningKey | None = None
        self.replace(keys or [])

    def replace(self, keys: list[SigningKey]) -> None:
        self._keys = {k.kid: k for k in keys}
        signers = [k for k in keys if k.private_key is not None]
        self._signing = max(signers, key=lambda k: k.created_at) if signers else None

    def add(self, key: SigningKey) -> None:
        self.replace([*self._keys.values(), key])

    @property
    def signing_key(self) -> SigningKey | None:
        return self._signing

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._keys.get(kid)
        return None if key is None else key.public_key

    def jwks(self) -> dict[str, Any]:
        ordered = sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)
        return {"keys": [k.public_jwk for k in ordered]}

    def __len__(self) -> int:
        return len(self._keys)


class KeyStore:
    """Loads, creates and rotates the shared keys in the ``signing_keys`` table."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        keep_seconds: int,
        refresh_seconds: float = 60.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._keep = timedelta(seconds=keep_seconds)
        self._refresh_seconds = refresh_seconds
        self._loaded_at: float | None = None
        self._kid_reload_at: float | None = None
        self._lock = anyio.Lock()
        self._startup_load: asyncio.Future[None] | None = None
        self.ring = KeyRing()

    def _seal(self, key: SigningKey) -> SigningKeyRow:
        if key.private_key is None:
            raise ValueError("only a key with its private half can be stored")
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return SigningKeyRow(
            kid=key.kid,
            algorithm=ALGORITHM,
            private_key=self._box.seal(pem),
            public_jwk=key.public_jwk,
            created_at=key.created_at,
        )

    def _open(self, row: SigningKeyRow) -> SigningKey:
        private = serialization.load_pem_private_key(self._box.open(row.private_key), None)
        if not isinstance(private, Ed25519PrivateKey):  # pragma: no cover - we only store these
            raise TypeError(f"key {row.kid} is not an Ed25519 key")
        return SigningKey(row.kid, private, private.public_key(), row.public_jwk, row.created_at)

    async def _read(self, session: AsyncSession) -> list[SigningKey]:
        rows = (await session.execute(select(SigningKeyRow))).scalars().all()
        return [self._open(r) for r in rows]

    async def load(self, *, create_if_empty: bool = True) -> None:
        """Read every key; a fresh database gets its first key here."""
        async with self._lock:
            # A read-only snapshot: this runs inside requests (periodic refresh, unknown
            # kid), where on SQLite a writer's BEGIN IMMEDIATE would wait for the request's
            # own write lock until the busy timeout.
            async with snapshot_session(self._sessionmaker) as session, session.begin():
                keys = await self._read(session)
            if not keys and create_if_empty:
                async with self._sessionmaker() as session, session.begin():
                    keys = await self._read(session)  # re-read under the write lock
                    if not keys:
                        key = generate_key()
                        session.add(self._seal(key))
                        keys = [key]
                        logger.info("created the first access-token signing key %s", key.kid)
            self.ring.replace(keys)
            self._loaded_at = time.monotonic()

    async def ensure_loaded(self) -> None:
        """Load on first use and refresh every ``refresh_seconds`` (picks up rotations)."""
        if self._loaded_at is None or (time.monotonic() - self._loaded_at >= self._refresh_seconds):
            await self.load()

    async def reload_for_unknown_kid(self) -> bool:
        """A token names a kid we don't hold: reload, but at most once every few seconds
        (so tokens with made-up kids cannot turn into a query each)."""
        now = time.monotonic()
        if self._kid_reload_at is not None and now - self._kid_reload_at < UNKNOWN_KID_RELOAD:
            return False
        self._kid_reload_at = now
        await self.load(create_if_empty=False)
        return True

    async def try_load(self) -> None:
        """At start-up: load (or create) the keys, but never keep the process from starting.

        Without a reachable, migrated database readiness says so; keys load on first use.
        """
        # Waited for, never cut short: cancelling the load inside its transaction (the first
        # key's INSERT under SQLite's write lock) could leave the lock to the busy timeout, and
        # the first sign-in then waited 30 s. A slow load finishes in the background instead.
        loading = asyncio.ensure_future(self._load_quietly())
        self._startup_load = loading
        with anyio.move_on_after(STARTUP_LOAD_SECONDS):
            await asyncio.shield(loading)
        if not loading.done():
            logger.warning("signing keys not loaded yet: still loading in the background")

    async def _load_quietly(self) -> None:
        try:
            await self.load()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.warning("signing keys not loaded yet: %s", type(exc).__name__)

    async def rotate(self) -> SigningKey:
        """Add a new signing key; drop keys retired longer than the longest token life."""
        key = generate_key()
        async with self._sessionmaker() as session, session.begin():
            session.add(self._seal(key))
            record(session, "keys.signing_rotated", object_type="signing_key", object_id=key.kid)
            newest_before = await session.scalar(
                select(func.max(SigningKeyRow.created_at)).where(SigningKeyRow.kid != key.kid)
            )
            if newest_before is not None and newest_before < utcnow() - self._keep:
                # older keys stopped signing when the previous signer arrived, longer ago
                # than any token lives: nothing they signed can still be valid
                await session.execute(
                    delete(SigningKeyRow).where(SigningKeyRow.created_at < newest_before)
                )
        await self.load()
        return key
