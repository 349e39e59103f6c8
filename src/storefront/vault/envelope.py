"""Envelope encryption of personal data: one data key per subject (a user), wrapped by the
master key, AES-256-GCM with the row and column as associated data.

A sealed value reads ``pd1.<data key version>.<base64url(nonce || ciphertext || tag)>``. The
associated data (``"users.email:<user id>"``, ``"orders.shipping_address:<order id>"``) binds
it to its row and column: copied anywhere else it no longer decrypts. Destroying a subject's
data key (crypto-shredding) makes every ciphertext of theirs unreadable, in the database and
in every backup taken before.

Unwrapped data keys are cached on the SQLAlchemy session (``session.info``): a request, whose
session is its unit of work, loads and unwraps each subject's key at most once, and batch
reads (``open_many``) load every subject's key in one query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, pop_session_state, session_state, utcnow
from storefront.kit.emails import normalize_email
from storefront.kit.master_keys import KEY_BYTES, NONCE_BYTES, KeyProvider, MasterKeyError

FORMAT = "pd1"
_CACHE = "storefront.crypto.data_keys"


class DataKeyRow(Base):
    """A subject's data key, wrapped by a master key; NULL key once destroyed."""

    __tablename__ = "data_keys"

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key_version: Mapped[int] = mapped_column(default=1)
    wrapped_key: Mapped[str | None] = mapped_column(Text)  # base64(nonce || sealed key)
    master_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]


class DataKeyDestroyed(Exception):
    """The subject was erased: their ciphertexts are unreadable and nothing new is sealed."""


class SealedValueError(Exception):
    """Not a ciphertext of this row and column under this subject's key (moved or altered)."""


@dataclass(frozen=True, slots=True)
class _DataKey:
    version: int
    cipher: AESGCM


@dataclass(frozen=True, slots=True)
class _Wrapped:
    """A data key row as read, not unwrapped yet."""

    key_version: int
    wrapped_key: str | None
    master_version: str | None
    destroyed_at: datetime | None


# per session: subject -> its data key (or its row, until first used), None when destroyed;
# absent: not loaded yet
_KeyCache = dict[uuid.UUID, _DataKey | _Wrapped | None]


def key_context(subject_id: uuid.UUID) -> bytes:
    """What a wrapped data key is bound to: its own row."""
    return b"data_keys:" + str(subject_id).encode()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(version: int, aad: str) -> bytes:
    return f"{FORMAT}|{version}|{aad}".encode()


def is_sealed(value: str) -> bool:
    return value.startswith(FORMAT + ".")


def seal_value(data_key: AESGCM, version: int, plaintext: str, aad: str) -> str:
    """``pd1.<data key version>.<base64url(nonce || ciphertext || tag)>``."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = data_key.encrypt(nonce, plaintext.encode(), _aad(version, aad))
    return f"{FORMAT}.{version}.{_b64encode(nonce + sealed)}"


def open_value(data_key: AESGCM, version: int, sealed: str, aad: str) -> str:
    """The plaintext; SealedValueError when ``sealed`` is not this row's under this key."""
    prefix, _, rest = sealed.partition(".")
    named, _, body = rest.partition(".")
    if prefix != FORMAT or not named.isdigit() or not body:
        raise SealedValueError("not a sealed value")
    if int(named) != version:
        raise SealedValueError(f"sealed under data key version {named}, not {version}")
    try:
        raw = _b64decode(body)
        plaintext = data_key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(version, aad))
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise SealedValueError("does not decrypt for this row (moved or altered)") from exc
    return plaintext.decode()


def new_data_key(provider: KeyProvider, subject_id: uuid.UUID) -> tuple[bytes, str, str]:
    """A fresh data key for ``subject_id``: (key, master version, wrapped key as stored)."""
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    version, wrapped = provider.wrap(data_key, context=key_context(subject_id))
    return data_key, version, base64.b64encode(wrapped).decode()


def unwrap_data_key(
    provider: KeyProvider, subject_id: uuid.UUID, wrapped_key: str, master_version: str
) -> bytes:
    return provider.unwrap(
        base64.b64decode(wrapped_key), version=master_version, context=key_context(subject_id)
    )


class PersonalDataVault:
    """Seals and opens personal data with per-subject data keys (``resources.vault``)."""

    def __init__(self, provider: KeyProvider, *, blind_index_key: bytes) -> None:
        if len(blind_index_key) < 16:
            raise MasterKeyError("the blind-index key must be at least 16 bytes")
        self.provider = provider
        self._blind_key = blind_index_key

    # --- blind index -----------------------------------------------------------------

    def blind_index(self, value: str) -> str:
        """Keyed HMAC-SHA256 (hex) of the normalised address (``normalize_email``): an equality
        lookup without the value. The key is separate from the master keys and never rotates
        with them (rotating it means recomputing every index)."""
        normalised = normalize_email(value).encode()
        return hmac.new(self._blind_key, b"email|" + normalised, hashlib.sha256).hexdigest()

    # --- data keys -------------------------------------------------------------------

    @staticmethod
    def _cache(session: AsyncSession) -> _KeyCache:
        return session_state(session, _CACHE, _KeyCache)

    def _unwrap(self, subject_id: uuid.UUID, row: _Wrapped) -> _DataKey | None:
        if row.destroyed_at is not None or row.wrapped_key is None or row.master_version is None:
            return None
        key = unwrap_data_key(self.provider, subject_id, row.wrapped_key, row.master_version)
        return _DataKey(row.key_version, AESGCM(key))

    def _resolved(self, cache: _KeyCache, subject_id: uuid.UUID) -> _DataKey | None:
        """The subject's key from the cache, unwrapping a remembered row on first use."""
        entry = cache.get(subject_id)
        if isinstance(entry, _Wrapped):
            entry = cache[subject_id] = self._unwrap(subject_id, entry)
        return entry

    async def _load(self, session: AsyncSession, subject_ids: Iterable[uuid.UUID]) -> _KeyCache:
        """The cache, with every subject of ``subject_ids`` that has a row loaded (one query)."""
        cache = self._cache(session)
        missing = {s for s in subject_ids if s not in cache}
        if missing:
            rows = await session.execute(
                select(
                    DataKeyRow.subject_id,
                    DataKeyRow.key_version,
                    DataKeyRow.wrapped_key,
                    DataKeyRow.master_version,
                    DataKeyRow.destroyed_at,
                ).where(DataKeyRow.subject_id.in_(sorted(missing)))
            )
            for row in rows:
                cache[row.subject_id] = _Wrapped(
                    row.key_version, row.wrapped_key, row.master_version, row.destroyed_at
                )
        return cache

    def remember(
        self,
        session: AsyncSession,
        subject_id: uuid.UUID,
        *,
        key_version: int | None,
        wrapped_key: str | None,
        master_version: str | None,
        destroyed_at: datetime | None,
    ) -> None:
        """Cache a key row read along with another query (``key_columns()`` joined on the
        subject), sparing a query later; unwrapped only when first used. A missing row
        (``key_version`` None) caches nothing."""
        cache = self._cache(session)
        if subject_id not in cache and key_version is not None:
            cache[subject_id] = _Wrapped(key_version, wrapped_key, master_version, destroyed_at)

    @staticmethod
    def key_columns() -> tuple[Any, ...]:
        """The data_keys columns ``remember`` takes, to select alongside a subject's row."""
        return (
            DataKeyRow.key_version,
            DataKeyRow.wrapped_key,
            DataKeyRow.master_version,
            DataKeyRow.destroyed_at,
        )

    async def _key_for_sealing(self, session: AsyncSession, subject_id: uuid.UUID) -> _DataKey:
        cache = await self._load(session, [subject_id])
        if subject_id not in cache:
            await self._create(session, subject_id)
            cache = await self._load(session, [subject_id])  # no query unless it lost a race
        key = self._resolved(cache, subject_id)
        if key is None:
            raise DataKeyDestroyed(f"the data key of {subject_id} was destroyed")
        return key

    async def _create(self, session: AsyncSession, subject_id: uuid.UUID) -> None:
        data_key, version, wrapped = new_data_key(self.provider, subject_id)
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(DataKeyRow).values(
                        subject_id=subject_id,
                        key_version=1,
                        wrapped_key=wrapped,
                        master_version=version,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            # a concurrent request created it first: the caller loads that one
            self._cache(session).pop(subject_id, None)
            return
        self._cache(session)[subject_id] = _DataKey(1, AESGCM(data_key))

    # --- sealing ---------------------------------------------------------------------

    async def seal_for(
        self, session: AsyncSession, subject_id: uuid.UUID, plaintext: str, *, aad: str
    ) -> str:
        """Encrypt ``plaintext`` with the subject's data key (created on first use), bound
        to ``aad`` (its table, column and row). Raises DataKeyDestroyed for an erased subject."""
        key = await self._key_for_sealing(session, subject_id)
        return seal_value(key.cipher, key.version, plaintext, aad)

    async def open_many(
        self, session: AsyncSession, items: Sequence[tuple[uuid.UUID | None, str, str]]
    ) -> list[str | None]:
        """(subject id, sealed, aad) -> the plaintext, or None when the subject's key is gone
        (destroyed, or no subject). One query loads every subject's key not yet cached.
        A value that does not decrypt for its row raises SealedValueError."""
        cache = await self._load(session, {s for s, _, _ in items if s is not None})
        out: list[str | None] = []
        for subject_id, sealed, aad in items:
            key = None if subject_id is None else self._resolved(cache, subject_id)
            out.append(None if key is None else open_value(key.cipher, key.version, sealed, aad))
        return out

    async def open_for(
        self, session: AsyncSession, subject_id: uuid.UUID | None, sealed: str, *, aad: str
    ) -> str | None:
        return (await self.open_many(session, [(subject_id, sealed, aad)]))[0]

    # --- erasure ---------------------------------------------------------------------

    async def destroy(self, session: AsyncSession, subject_id: uuid.UUID) -> bool:
        """Crypto-shredding: forget the subject's data key for good, in this transaction.

        Returns False when it was already destroyed. A subject without a key gets a
        destroyed marker, so nothing is ever sealed for them again."""
        now = utcnow()
        result = await session.execute(
            update(DataKeyRow)
            .where(DataKeyRow.subject_id == subject_id, DataKeyRow.destroyed_at.is_(None))
            .values(wrapped_key=None, master_version=None, destroyed_at=now)
            .execution_options(synchronize_session=False)
        )
        changed = bool(getattr(result, "rowcount", 0))
        if not changed:
            exists = await session.scalar(
                select(DataKeyRow.subject_id).where(DataKeyRow.subject_id == subject_id)
            )
            if exists is None:
                await session.execute(
                    insert(DataKeyRow).values(
                        subject_id=subject_id, key_version=1, created_at=now, destroyed_at=now
                    )
                )
                changed = True
        self._cache(session)[subject_id] = None
        return changed

    def cached_count(self, session: AsyncSession) -> int:
        return len(self._cache(session))

    def forget_cached(self, session: AsyncSession) -> None:
        """Drop the session's unwrapped keys (a long-lived session between units of work)."""
        pop_session_state(session, _CACHE)
