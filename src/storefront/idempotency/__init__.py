"""Durable Idempotency-Key handling (IETF draft-ietf-httpapi-idempotency-key-header).

A key is reserved in its own committed statement before any work starts, so a concurrent
request with the same key sees it and gets 409. The response is stored in the *same*
transaction as the work itself, so "acknowledged" and "recorded" can never disagree: either
both commit or neither does. A failed attempt releases the key so the client may retry it.
A reservation whose holder died is taken over after ``lock_timeout``; the completion is
guarded by the reservation's lock token, so a slow original can never commit a second result.

Work that commits its effects before its answer is recorded (a payment: its row before the
provider is called, its settlement after) runs with ``run_attempt``: the record's id is its
attempt id, and its ``Outcomes`` say what that attempt left behind, so a retry gets the
attempt's outcome even when the answer was lost with the connection (decision 0191).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import anyio
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    JSON,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storefront.kit.db import Base, dialect_insert, new_id, utcnow
from storefront.kit.errors import (
    Conflict,
    IdempotencyInFlight,
    IdempotencyKeyReused,
)

IN_FLIGHT = "in_flight"
COMPLETED = "completed"
MAX_KEY_LENGTH = 255


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("uq_idempotency_keys_owner_scope_key", "owner", "scope", "key", unique=True),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(300))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    lock_token: Mapped[uuid.UUID]
    locked_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# the reservation's INSERT and the completion run on every keyed request: on the table, not
# the ORM entity (no ORM bulk-DML path), and the completion built once (decision 0060)
_records = cast(Table, IdempotencyRecord.__table__)
_COMPLETE = (
    update(_records)
    .where(
        _records.c.id == bindparam("b_record_id", type_=_records.c.id.type),
        _records.c.lock_token == bindparam("b_lock_token", type_=_records.c.lock_token.type),
        _records.c.state == IN_FLIGHT,
    )
    .values(
        state=COMPLETED,
        response_status=bindparam("b_status", type_=_records.c.response_status.type),
        response_headers=bindparam("b_headers", type_=_records.c.response_headers.type),
        response_body=bindparam("b_body", type_=_records.c.response_body.type),
    )
)


_RESERVE_COLUMNS = (
    "id",
    "owner",
    "scope",
    "key",
    "fingerprint",
    "state",
    "lock_token",
    "locked_at",
    "expires_at",
    "created_at",
)
# the reservation's INSERT ... ON CONFLICT DO NOTHING RETURNING id, one per dialect (both
# spell it alike, but each has its own construct), built on first use
_RESERVE: dict[str, Any] = {}


def _reserve_statement(session: AsyncSession) -> Any:
    name = session.get_bind().dialect.name
    stmt = _RESERVE.get(name)
    if stmt is None:
        stmt = _RESERVE[name] = (
            dialect_insert(session)(_records)
            .values({c: bindparam(f"b_{c}", type_=_records.c[c].type) for c in _RESERVE_COLUMNS})
            .on_conflict_do_nothing(index_elements=["owner", "scope", "key"])
            .returning(_records.c.id)
        )
    return stmt


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    replayed: bool = False  # the stored answer of an earlier run, not this one's


@dataclass(frozen=True, slots=True)
class _Reservation:
    record_id: uuid.UUID
    lock_token: uuid.UUID


def fingerprint(scope: str, payload: Any) -> str:
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(scope.encode() + b"\0" + canonical).hexdigest()


_SEALED = b"sb1:"  # AES-256-GCM: the prefix, a 12-byte nonce, then ciphertext and tag


class ResponseSealer:
    """Seals stored response bodies (they can hold personal data: an order's address).

    AES-256-GCM with the record's id as associated data, so a body copied to another record
    does not open. Bodies stored before sealing existed (no prefix) are returned as they are;
    they expire with their record (``ttl``).
    """

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, record_id: uuid.UUID, body: bytes) -> bytes:
        nonce = os.urandom(12)
        return _SEALED + nonce + self._aead.encrypt(nonce, body, record_id.bytes)

    def open(self, record_id: uuid.UUID, stored: bytes) -> bytes:
        if not stored.startswith(_SEALED):
            return stored
        nonce = stored[len(_SEALED) : len(_SEALED) + 12]
        return self._aead.decrypt(nonce, stored[len(_SEALED) + 12 :], record_id.bytes)


class Outcomes(Protocol):
    """What an attempt (named by its key record's id) of work that commits before its
    answer is recorded left behind (decision 0191)."""

    async def committed(self, attempt: uuid.UUID) -> bool:
        """True when the attempt's effects are committed (its key must not be given up: a
        retry would run the work again as a new operation)."""
        ...

    async def answer(self, attempt: uuid.UUID) -> StoredResponse | None:
        """The attempt's final answer from its committed effects, or None while it has
        none yet."""
        ...


class IdempotencyStore:
    def __init__(
        self, *, ttl: timedelta, lock_timeout: timedelta, sealer: ResponseSealer | None = None
    ) -> None:
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self.sealer = sealer

    async def run(
        self,
        session: AsyncSession,
        *,
        owner: str,
        scope: str,
        key: str,
        payload: Any,
        work: Callable[[], Awaitable[StoredResponse]],
    ) -> StoredResponse:
        """Run ``work`` at most once per (owner, scope, key); replay its stored response."""

        async def attempt(_: uuid.UUID) -> StoredResponse:
            return await work()

        return await self._run(session, owner, scope, key, payload, attempt, None)

    async def run_attempt(
        self,
        session: AsyncSession,
        *,
        owner: str,
        scope: str,
        key: str,
        payload: Any,
        work: Callable[[uuid.UUID], Awaitable[StoredResponse]],
        outcomes: Outcomes,
    ) -> StoredResponse:
        """``run`` for work that commits before its answer is recorded: ``work`` gets the
        attempt id (the record's id; a retry that takes the key over gets the same one).
        A failed attempt whose effects are committed keeps its key and hands it back at once
        (the retry takes it over and answers from those effects) instead of releasing it;
        a key still held answers from ``outcomes.answer`` when there is one, not 409."""
        return await self._run(session, owner, scope, key, payload, work, outcomes)

    async def _run(
        self,
        session: AsyncSession,
        owner: str,
        scope: str,
        key: str,
        payload: Any,
        work: Callable[[uuid.UUID], Awaitable[StoredResponse]],
        outcomes: Outcomes | None,
    ) -> StoredResponse:
        fp = fingerprint(scope, payload)
        outcome = await self._reserve(
            session, owner=owner, scope=scope, key=key, fp=fp, outcomes=outcomes
        )
        if isinstance(outcome, StoredResponse):
            return replace(outcome, replayed=True)
        try:
            result = await work(outcome.record_id)
            await self._complete(session, outcome, result)
            await session.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):  # release even when the client went away
                await session.rollback()
                if outcomes is not None and await outcomes.committed(outcome.record_id):
                    await self._hand_back(session, outcome)
                else:
                    await self._release(session, outcome)
            raise
        return result

    async def _reserve(
        self,
        session: AsyncSession,
        *,
        owner: str,
        scope: str,
        key: str,
        fp: str,
        outcomes: Outcomes | None = None,
    ) -> StoredResponse | _Reservation:
        for _ in range(3):
            now = utcnow()
            token = uuid.uuid4()
            record_id = new_id()
            values = {
                "b_id": record_id,
                "b_owner": owner,
                "b_scope": scope,
                "b_key": key,
                "b_fingerprint": fp,
                "b_state": IN_FLIGHT,
                "b_lock_token": token,
                "b_locked_at": now,
                "b_expires_at": now + self.ttl,
                "b_created_at": now,
            }
            inserted = (
                await session.execute(_reserve_statement(session), values)
            ).scalar_one_or_none()
            await session.commit()
            if inserted is not None:
                return _Reservation(inserted, token)

            existing = (
                await session.execute(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.owner == owner,
                        IdempotencyRecord.scope == scope,
                        IdempotencyRecord.key == key,
                    )
                )
            ).scalar_one_or_none()
            if existing is None:  # released between our insert and select: try again
                await session.commit()
                continue
            if existing.expires_at <= now:
                await session.execute(
                    delete(IdempotencyRecord).where(IdempotencyRecord.id == existing.id)
                )
                await session.commit()
                continue
            if existing.fingerprint != fp:
                await session.commit()
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request body."
                )
            if existing.state == COMPLETED:
                await session.commit()
                body = existing.response_body or b""
                if self.sealer is not None:
                    body = self.sealer.open(existing.id, body)
                return StoredResponse(
                    existing.response_status or 200, body, dict(existing.response_headers or {})
                )
            if existing.locked_at <= now - self.lock_timeout:
                took_over = await session.execute(
                    update(IdempotencyRecord)
                    .where(
                        IdempotencyRecord.id == existing.id,
                        IdempotencyRecord.lock_token == existing.lock_token,
                    )
                    .values(lock_token=token, locked_at=now)
                )
                await session.commit()
                if took_over.rowcount == 1:  # type: ignore[attr-defined]
                    return _Reservation(existing.id, token)
                continue
            await session.commit()
            if outcomes is not None:
                # its holder may have lost its answer (and its connection) after its
                # effects committed: answered from them when they are final
                answer = await outcomes.answer(existing.id)
                await session.commit()
                if answer is not None:
                    return answer
            raise IdempotencyInFlight(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                headers={"Retry-After": "1"},
            )
        raise IdempotencyInFlight(
            "Could not reserve this Idempotency-Key; retry shortly.", headers={"Retry-After": "1"}
        )

    async def _complete(
        self, session: AsyncSession, reservation: _Reservation, result: StoredResponse
    ) -> None:
        body = (
            result.body
            if self.sealer is None
            else self.sealer.seal(reservation.record_id, result.body)
        )
        done = await session.execute(
            _COMPLETE,
            {
                "b_record_id": reservation.record_id,
                "b_lock_token": reservation.lock_token,
                "b_status": result.status,
                "b_headers": result.headers,
                "b_body": body,
            },
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("The reservation for this Idempotency-Key expired; retry the request.")

    async def _release(self, session: AsyncSession, reservation: _Reservation) -> None:
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.id == reservation.record_id,
                IdempotencyRecord.lock_token == reservation.lock_token,
                IdempotencyRecord.state == IN_FLIGHT,
            )
        )
        await session.commit()

    async def _hand_back(self, session: AsyncSession, reservation: _Reservation) -> None:
        """Keep the reservation, but as one whose holder died: the next request with the
        key takes it over at once, with the same attempt id."""
        await session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == reservation.record_id,
                IdempotencyRecord.lock_token == reservation.lock_token,
                IdempotencyRecord.state == IN_FLIGHT,
            )
            .values(locked_at=utcnow() - self.lock_timeout)
        )
        await session.commit()

    async def purge_expired(
        self, session: AsyncSession, *, dry_run: bool = False, limit: int | None = None
    ) -> int:
        """Delete the records past their expiry, at most ``limit`` of them (or, with
        ``dry_run``, count them all)."""
        expired = IdempotencyRecord.expires_at <= utcnow()
        if dry_run:
            stmt = select(func.count()).select_from(IdempotencyRecord).where(expired)
            return int(await session.scalar(stmt) or 0)
        if limit is not None:
            expired = IdempotencyRecord.id.in_(
                select(IdempotencyRecord.id).where(expired).limit(limit)
            )
        result = await session.execute(delete(IdempotencyRecord).where(expired))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_owned_by(self, session: AsyncSession, owner: str) -> int:
        """Forget every record of ``owner`` (erasure: stored responses hold personal data)."""
        result = await session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.owner == owner)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
