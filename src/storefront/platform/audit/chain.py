"""The hash chain: the canonical form of an entry, appending under a lock, verifying.

Canonical form of an entry (what its ``hash`` covers): a JSON object with exactly the keys
``action, actor_id, actor_type, client_address, details, object_id, object_type,
occurred_at, prev_hash, request_id, seq, shop_id, trace_id``, serialised with the keys
sorted (``details``' keys too), no whitespace (separators ``,`` and ``:``), non-ASCII
characters as themselves, encoded as UTF-8. UUIDs are lower-case hyphenated strings,
``occurred_at`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction digits),
absent values are ``null``. ``hash`` is the lower-case hex SHA-256 of those bytes; as
``prev_hash`` is inside the object, each hash commits to every entry before it. The first
entry's ``prev_hash`` is 64 zeros. Any other implementation that follows this paragraph
can verify an exported chain.

Appending: the entries a transaction recorded are inserted just before it commits. On
PostgreSQL a transaction-level advisory lock (``APPEND_LOCK_KEY``) serialises appenders from
that moment until their commit, so each one reads the true last entry (READ COMMITTED: the
statement after the lock sees every committed predecessor); on SQLite the writer's
``BEGIN IMMEDIATE`` already serialises. ``seq`` is the previous entry's plus one, so the
sequence has no gaps unless someone deletes rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.platform.audit.models import AuditEvent

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key for appending (an arbitrary constant owned by the audit log:
# b"audt" as a big-endian integer)
APPEND_LOCK_KEY = 0x61756474
CANONICAL_FIELDS = (
    "action",
    "actor_id",
    "actor_type",
    "client_address",
    "details",
    "object_id",
    "object_type",
    "occurred_at",
    "prev_hash",
    "request_id",
    "seq",
    "shop_id",
    "trace_id",
)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: object) -> str | None:
    return None if value is None else str(value)  # a UUID's str() is lower-case hyphenated


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers (see the module docstring)."""
    document = {
        "action": entry["action"],
        "actor_id": _text(entry["actor_id"]),
        "actor_type": entry["actor_type"],
        "client_address": entry["client_address"],
        "details": dict(entry["details"]),
        "object_id": _text(entry["object_id"]),
        "object_type": entry["object_type"],
        "occurred_at": format_time(entry["occurred_at"]),
        "prev_hash": entry["prev_hash"],
        "request_id": entry["request_id"],
        "seq": int(entry["seq"]),
        "shop_id": _text(entry["shop_id"]),
        "trace_id": entry["trace_id"],
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def append(connection: Connection, entries: list[dict[str, Any]]) -> None:
    """Chain ``entries`` (column values without seq/prev_hash/hash) onto the log.

    Runs inside the committing transaction (synchronous: it is called from the session's
    ``before_commit`` hook, which SQLAlchemy's asyncio layer runs where blocking-style calls
    are allowed).
    """
    if not entries:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
    last = connection.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS_HASH)
    rows = []
    for values in entries:
        seq += 1
        row = {**values, "seq": seq, "prev_hash": prev}
        row["hash"] = prev = entry_hash(row)
        rows.append(row)
    connection.execute(insert(AuditEvent), rows)


# --- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokenLink:
    seq: int
    problem: str  # "gap" | "prev link mismatch" | "hash mismatch"
    detail: str


@dataclass(frozen=True, slots=True)
class Verification:
    checked: int
    broken: BrokenLink | None
    head_hash: str  # the last good entry's hash: note it to detect a truncated tail later

    @property
    def ok(self) -> bool:
        return self.broken is None


_COLUMNS = [AuditEvent.__table__.c[name] for name in (*CANONICAL_FIELDS, "hash")]


async def verify_chain(session: AsyncSession, *, batch_size: int = 1000) -> Verification:
    """Walk the whole chain in ``seq`` order, ``batch_size`` rows per query (keyset), and
    stop at the first broken link. Use a snapshot session, so the walk sees one state."""
    expected_seq, prev, checked = 1, GENESIS_HASH, 0
    while True:
        rows = (
            (
                await session.execute(
                    select(*_COLUMNS)
                    .where(AuditEvent.seq >= expected_seq)
                    .order_by(AuditEvent.seq)
                    .limit(batch_size)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return Verification(checked, None, prev)
        for row in rows:
            seq = int(row["seq"])
            if seq != expected_seq:
                return Verification(
                    checked,
                    BrokenLink(
                        expected_seq, "gap", f"entry {expected_seq} is missing (next is {seq})"
                    ),
                    prev,
                )
            if row["prev_hash"] != prev:
                return Verification(
                    checked,
                    BrokenLink(
                        seq,
                        "prev link mismatch",
                        "its prev_hash is not the hash of the entry before it",
                    ),
                    prev,
                )
            computed = entry_hash(dict(row))
            if computed != row["hash"]:
                return Verification(
                    checked,
                    BrokenLink(seq, "hash mismatch", "its contents do not match its stored hash"),
                    prev,
                )
            prev, expected_seq, checked = row["hash"], seq + 1, checked + 1
