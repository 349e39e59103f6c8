"""Recording audit entries: buffered on the session, chained in just before it commits.

``record`` only buffers (no I/O). One ``before_commit`` hook on every ORM session appends the
buffer to the chain inside the committing transaction, wherever that commit happens (the
request's ``session_scope``, a job, a CLI command, an explicit ``session.commit()``), so an
entry exists exactly when the work it describes does. Work rolled back leaves no entry,
except for *durable* entries (failed or denied security events, such as a wrong password):
those are written after the rollback, in a new transaction on the same session (see
``platform.db.after_rollback``). Never while the failing transaction is still open: on SQLite
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

from sqlalchemy import event, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from storefront.platform.audit.chain import append
from storefront.platform.audit.events import FORBIDDEN_DETAIL_KEYS, SecurityEvent
from storefront.platform.audit.models import AuditEvent
from storefront.platform.db import after_rollback, utcnow
from storefront.platform.observability.logging import current_request, is_sensitive_key
from storefront.platform.observability.tracing import current_trace_id

logger = logging.getLogger("storefront.audit")

DetailValue = str | int | bool | None
_BUFFER = "storefront.audit.buffer"
_RESCUED = "storefront.audit.rescued"
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


def _buffer(session: Session) -> _Buffer:
    buffer: _Buffer | None = session.info.get(_BUFFER)
    if buffer is None:
        buffer = session.info[_BUFFER] = _Buffer()
    return buffer


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
    rescued: list[_Entry] = session.info.pop(_RESCUED, [])
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
    buffer: _Buffer | None = session.info.get(_BUFFER)
    if buffer is None or not buffer.entries:
        return
    append(session.connection(), [entry.values for entry in buffer.entries])


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # fired for a released SAVEPOINT too; the buffer waits for the root
    session.info.pop(_BUFFER, None)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back_savepoint(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        return  # the root's end is handled below
    buffer: _Buffer | None = session.info.get(_BUFFER)
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
    buffer: _Buffer | None = session.info.pop(_BUFFER, None)
    if buffer is None:
        return  # committed (cleared above) or nothing recorded
    durable = [e for e in buffer.entries if e.durable]
    if durable:
        session.info.setdefault(_RESCUED, []).extend(durable)


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


async def entries_about(session: AsyncSession, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Entries whose actor or object is this user, oldest first (for the GDPR export)."""
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
    return [as_dict(row) for row in rows]


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
