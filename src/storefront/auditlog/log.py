"""Recording audit entries: buffered on the session, chained in just before it commits.

``record`` only buffers (no I/O). One ``before_commit`` hook on every ORM session appends the
buffer to the chain inside the committing transaction, wherever that commit happens (the
request's ``session_scope``, a job, a CLI command, an explicit ``session.commit()``), so an
entry exists exactly when the work it describes does. Work rolled back leaves no entry,
except for *durable* entries (failed or denied security events, such as a wrong password):
those are written after the rollback, in a new transaction on the same session (see
``kit.db.after_rollback``). Never while the failing transaction is still open: on SQLite
that transaction holds the database's write lock, and a second writer would wait for it
forever.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from storefront.auditlog.chain import append
from storefront.auditlog.events import FORBIDDEN_DETAIL_KEYS, SecurityEvent
from storefront.auditlog.models import AuditEvent
from storefront.kit.db import (
    after_rollback,
    peek_session_state,
    pop_session_state,
    session_state,
    utcnow,
)
from storefront.telemetry.logging import current_request, is_sensitive_key
from storefront.telemetry.tracing import current_trace_id

logger = logging.getLogger("storefront.audit")

DetailValue = str | int | bool | None
_BUFFER = "storefront.audit.buffer"
_RESCUED = "storefront.audit.rescued"
_ERASED = "storefront.audit.erased"  # users erased in this transaction
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
MAX_DETAIL_TEXT = 200


class AuditDetailsRejected(ValueError):
    """A caller tried to put something into an entry that must never be there."""


@dataclass(slots=True)
class _Entry:
    values: dict[str, Any]
    durable: bool
    transaction: SessionTransaction | None


@dataclass(slots=True)
class _Buffer:
    entries: list[_Entry] = field(default_factory=list)
    rescue_registered: bool = False


def _check_details(details: Mapping[str, DetailValue] | None) -> dict[str, DetailValue]:
    clean: dict[str, DetailValue] = {}
    for key, value in (details or {}).items():
        if key in FORBIDDEN_DETAIL_KEYS or is_sensitive_key(key):
            raise AuditDetailsRejected(f"audit details never carry {key!r}")
        if value is not None and not isinstance(value, str | int | bool):
            raise AuditDetailsRejected(f"audit detail {key!r} must be text, a number or a flag")
        if isinstance(value, str) and (len(value) > MAX_DETAIL_TEXT or _EMAIL.search(value)):
            raise AuditDetailsRejected(f"audit detail {key!r} looks like free text or an email")
        clean[key] = value
    return clean


def _request_context() -> dict[str, Any]:
    holder = current_request()
    trace_id = current_trace_id()
    if holder is None:
        return {"user_id": None, "client_address": None, "request_id": None, "trace_id": trace_id}
    return {
        "user_id": holder.get("user_id"),
        "client_address": holder.get("client_address"),
        "request_id": holder.get("request_id"),
        "trace_id": trace_id or holder.get("trace_id"),
    }


def _uuid(value: object) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def _rescued() -> list[_Entry]:
    return []


def _buffer(session: Session) -> _Buffer:
    return session_state(session, _BUFFER, _Buffer)


def _innermost(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def record(
    session: AsyncSession,
    action: str,
    *,
    object_type: str,
    object_id: object | None = None,
    shop_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    details: Mapping[str, DetailValue] | None = None,
    client_address: str | None = None,
    occurred_at: datetime | None = None,
    durable: bool = False,
) -> None:
    """Buffer an entry; it joins the chain when the session's transaction commits, and is
    dropped if it rolls back (unless ``durable``: then it is written after the rollback).

    ``actor_id`` defaults to the signed-in user of the current request; with none the actor
    is "anonymous" inside a request and "system" outside one (a job, a CLI command). The
    client address, request id and trace id come from the request context. ``details``
    hold only ids, counts, states and reasons: keys that name secrets or personal data and
    values that look like an email or free text are refused (``AuditDetailsRejected``).
    """
    if not _ACTION.match(action) or len(action) > 64:
        raise AuditDetailsRejected(f"audit actions are dotted lower-case names, not {action!r}")
    context = _request_context()
    actor = _uuid(actor_id if actor_id is not None else context["user_id"])
    in_request = current_request() is not None
    actor_type = "user" if actor is not None else ("anonymous" if in_request else "system")
    address = client_address or context["client_address"]
    values = {
        "occurred_at": occurred_at or utcnow(),
        "actor_type": actor_type,
        "actor_id": actor,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id)[:64],
        "shop_id": shop_id,
        "client_address": None if address is None else str(address)[:64],
        "request_id": context["request_id"],
        "trace_id": context["trace_id"],
        "details": _check_details(details),
    }
    sync = session.sync_session
    buffer = _buffer(sync)
    buffer.entries.append(_Entry(values, durable, _innermost(sync)))
    if durable and not buffer.rescue_registered:
        buffer.rescue_registered = True
        after_rollback(session, lambda: _write_rescued(session))


def record_security_event(session: AsyncSession, event: SecurityEvent) -> None:
    """An identity security event as an audit entry. Failed and denied attempts are durable:
    the request that reports them fails and rolls back, and they must be kept anyway."""
    details: dict[str, DetailValue] = {"outcome": event.outcome}
    if event.reason:
        details["reason"] = event.reason
    if event.session_id:
        details["session_id"] = event.session_id
    for key, value in event.details.items():
        # the log line redacts what it must; the audit entry keeps only plain, safe values
        if is_sensitive_key(key) or not (value is None or isinstance(value, str | int | bool)):
            continue
        if isinstance(value, str) and (len(value) > MAX_DETAIL_TEXT or _EMAIL.search(value)):
            continue
        details[key] = value
    user_id = _uuid(event.user_id)
    record(
        session,
        event.name,
        object_type="user",
        object_id=user_id,
        actor_id=user_id,
        details=details,
        client_address=event.client_address,
        occurred_at=event.occurred_at,
        durable=event.outcome != "success",
    )


async def _write_rescued(session: AsyncSession) -> None:
    rescued: list[_Entry] = pop_session_state(session, _RESCUED) or []
    if not rescued:
        return
    buffer = _buffer(session.sync_session)
    buffer.entries.extend(_Entry(e.values, False, None) for e in rescued)
    await session.commit()
    logger.debug("wrote %d audit entries of a rolled-back transaction", len(rescued))


# --- the hooks (every ORM session; registered when this package is imported) ---------------


@event.listens_for(Session, "before_commit")
def _append_before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # fired for a SAVEPOINT release too; the root transaction's commit appends
    buffer: _Buffer | None = peek_session_state(session, _BUFFER)
    if buffer is None or not buffer.entries:
        return
    erased: set[uuid.UUID] = peek_session_state(session, _ERASED) or set()
    for entry in buffer.entries:
        if erased and entry.values["actor_id"] in erased:
            # recorded in the transaction that erases its actor: written without an address
            entry.values["client_address"] = None
    append(session.connection(), [entry.values for entry in buffer.entries])


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # fired for a released SAVEPOINT too; the buffer waits for the root
    pop_session_state(session, _BUFFER)
    pop_session_state(session, _ERASED)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back_savepoint(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        return  # the root's end is handled below
    buffer: _Buffer | None = peek_session_state(session, _BUFFER)
    if buffer is None:
        return

    def inside(entry: _Entry) -> bool:
        transaction = entry.transaction
        while transaction is not None:
            if transaction is previous:
                return True
            transaction = transaction.parent
        return False

    buffer.entries = [e for e in buffer.entries if e.durable or not inside(e)]


@event.listens_for(Session, "after_transaction_end")
def _rescue_at_rollback(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    pop_session_state(session, _ERASED)
    buffer: _Buffer | None = pop_session_state(session, _BUFFER)
    if buffer is None:
        return  # committed (cleared above) or nothing recorded
    durable = [e for e in buffer.entries if e.durable]
    if durable:
        session_state(session, _RESCUED, _rescued).extend(durable)


# --- reading --------------------------------------------------------------------------------


def as_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "occurred_at": row.occurred_at,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "shop_id": row.shop_id,
        "client_address": row.client_address,
        "request_id": row.request_id,
        "trace_id": row.trace_id,
        "details": dict(row.details or {}),
        "hash": row.hash,
    }


def minimised_for(row: AuditEvent, viewer: uuid.UUID) -> dict[str, Any]:
    """An entry as shown to ``viewer`` when someone else may have acted in it: the actor's
    id, address, request and trace ids stay only when the viewer is the actor."""
    entry = as_dict(row)
    if row.actor_type == "user" and row.actor_id == viewer:
        return entry
    entry.update(client_address=None, request_id=None, trace_id=None, actor_id=None)
    if row.actor_type == "user":
        entry["actor_type"] = "other_user"
    return entry


async def entries_about(session: AsyncSession, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Entries whose actor or object is this user, oldest first (for the GDPR export).

    Only the user's own data: in an entry someone else acted in (an owner adding the user
    as staff), that actor's id, address, request and trace ids are left out
    (``minimised_for``; decision record 0116)."""
    rows = await session.scalars(
        select(AuditEvent)
        .where(
            or_(
                AuditEvent.actor_id == user_id,
                (AuditEvent.object_type == "user") & (AuditEvent.object_id == str(user_id)),
            )
        )
        .order_by(AuditEvent.seq)
    )
    return [minimised_for(row, user_id) for row in rows]


async def erase_personal_fields(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Null the personal fields (``chain.PERSONAL_FIELDS``) and their salts of every entry
    this user acted in, and of the entries this transaction still records for them; the
    commitments stay, so the chain still verifies (decision record 0115).

    On PostgreSQL the append-only trigger lets exactly this UPDATE through: personal fields
    and salt to NULL on an entry with a commitment, every other column unchanged. Legacy
    entries without a commitment (appended by pre-0009 code after the migration) keep their
    address: nulling it would break their hash. Returns the number of entries changed."""
    erased: set[uuid.UUID] = session_state(session, _ERASED, set)
    erased.add(user_id)
    result = await session.execute(
        update(AuditEvent)
        .where(
            AuditEvent.actor_id == user_id,
            AuditEvent.personal_commitment.is_not(None),
            or_(AuditEvent.client_address.is_not(None), AuditEvent.personal_salt.is_not(None)),
        )
        .values(client_address=None, personal_salt=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def expire_addresses(
    session: AsyncSession, *, before: datetime, dry_run: bool, limit: int | None = None
) -> int:
    """Retention: null the personal fields and salts of entries older than ``before`` (the
    same UPDATE erasure makes, so the chain still verifies and the PostgreSQL trigger lets
    it through). A dry run only counts; ``limit`` caps the entries one call changes."""
    # an entry holds an address exactly while it has a salt (ix_audit_events_address_expiry)
    due: ColumnElement[bool] = (
        AuditEvent.personal_salt.is_not(None)
        & (AuditEvent.occurred_at < before)
        & AuditEvent.personal_commitment.is_not(None)
    )
    if dry_run:
        count = select(func.count()).select_from(AuditEvent).where(due)
        return int(await session.scalar(count) or 0)
    if limit is not None:
        due = AuditEvent.seq.in_(select(AuditEvent.seq).where(due).limit(limit))
    result = await session.execute(
        update(AuditEvent)
        .where(due)
        .values(client_address=None, personal_salt=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def newest_first(
    session: AsyncSession, *, shop_id: uuid.UUID | None, before: int | None, limit: int
) -> list[AuditEvent]:
    """One page, newest first: entries of one shop (or of every shop and none, for
    ``shop_id=None``) with ``seq`` below ``before``."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if shop_id is not None:
        query = query.where(AuditEvent.shop_id == shop_id)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    return list(await session.scalars(query))
