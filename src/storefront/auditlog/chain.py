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

Chain versions (``chain_version``, one per entry; decision record 0115):

- **1** (entries written before migration 0009): the canonical form above, with the client
  address in the clear. Migration 0009 gave each such entry with an address a salt and a
  commitment (below) and appended one ``audit.chain_upgraded`` entry whose details carry
  ``legacy_entries`` (how many version-1 entries precede it) and ``legacy_digest``: the
  running digest ``d = sha256_hex(d + seal)`` from 64 zeros over every version-1 entry's
  *seal* (the version-2 canonical form of that entry with ``chain_version`` 1). An erased
  version-1 entry can no longer be checked against its own hash; its seal still is, against
  that digest.
- **2**: the canonical form has no ``client_address``; instead ``personal``, the entry's
  *commitment* to its personal fields, and ``chain_version`` (2). The commitment is
  ``HMAC-SHA256(key = personal_salt, message = {"client_address": ...})`` (the message in
  the same canonical JSON, ``personal_salt`` 16 random bytes stored hex in the row), or
  ``null`` for an entry with no personal fields. Erasure nulls the personal fields and the
  salt and keeps the commitment: the hash still verifies, and without the salt the
  commitment cannot be brute-forced back into an address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog.models import AuditEvent

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
# the fields that hold personal data of the actor (nulled by erasure); the hash of a
# version-2 entry covers only their commitment
PERSONAL_FIELDS = ("client_address",)
CURRENT_VERSION = 2
UPGRADE_ACTION = "audit.chain_upgraded"


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: object) -> str | None:
    return None if value is None else str(value)  # a UUID's str() is lower-case hyphenated


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def new_salt() -> str:
    return secrets.token_hex(16)


def personal_values(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {name: entry.get(name) for name in PERSONAL_FIELDS}


def commitment(salt: str, entry: Mapping[str, Any]) -> str:
    """The HMAC of an entry's personal fields under its salt (see the module docstring)."""
    return hmac.new(bytes.fromhex(salt), _json(personal_values(entry)), hashlib.sha256).hexdigest()


def seal_personal(values: dict[str, Any]) -> None:
    """Give a new entry's values their salt and commitment (none without personal fields)."""
    if any(v is not None for v in personal_values(values).values()):
        salt = new_salt()
        values["personal_salt"] = salt
        values["personal_commitment"] = commitment(salt, values)
    else:
        values["personal_salt"] = values["personal_commitment"] = None


def _common(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "action": entry["action"],
        "actor_id": _text(entry["actor_id"]),
        "actor_type": entry["actor_type"],
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


def canonical_bytes_v2(entry: Mapping[str, Any], *, version: int | None = None) -> bytes:
    """Version 2: personal fields only through their commitment, and the entry's own
    ``chain_version`` (``version=1`` gives the seal of a version-1 entry, see the module
    docstring)."""
    number = int(entry["chain_version"]) if version is None else version
    return _json(
        {**_common(entry), "chain_version": number, "personal": entry["personal_commitment"]}
    )


def legacy_seal(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes_v2(entry, version=1)).hexdigest()


def next_digest(digest: str, seal: str) -> str:
    return hashlib.sha256((digest + seal).encode("ascii")).hexdigest()


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes a version-1 entry's hash covers (see the module docstring): the common
    fields and the client address itself (keys are sorted, so the order here is free)."""
    return _json({**_common(entry), "client_address": entry["client_address"]})


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry under its ``chain_version`` (1 when it has none)."""
    if int(entry.get("chain_version") or 1) >= CURRENT_VERSION:
        return hashlib.sha256(canonical_bytes_v2(entry)).hexdigest()
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


# every commit that records something runs these three: built once (decision 0060)
_events = cast(Table, AuditEvent.__table__)
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LAST = select(_events.c.seq, _events.c.hash).order_by(_events.c.seq.desc()).limit(1)
_INSERT = insert(_events)


def append(connection: Connection, entries: list[dict[str, Any]]) -> None:
    """Chain ``entries`` (column values without seq/prev_hash/hash) onto the log.

    Runs inside the committing transaction (synchronous: it is called from the session's
    ``before_commit`` hook, which SQLAlchemy's asyncio layer runs where blocking-style calls
    are allowed).
    """
    if not entries:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK, {"key": APPEND_LOCK_KEY})
    last = connection.execute(_LAST).first()
    seq, prev = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS_HASH)
    rows = []
    for values in entries:
        seq += 1
        row = {**values, "seq": seq, "prev_hash": prev, "chain_version": CURRENT_VERSION}
        seal_personal(row)
        row["hash"] = prev = entry_hash(row)
        rows.append(row)
    connection.execute(_INSERT, rows)


# --- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokenLink:
    seq: int
    # "gap" | "prev link mismatch" | "hash mismatch" | "personal fields mismatch"
    # | "legacy digest mismatch"
    problem: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verification:
    checked: int
    broken: BrokenLink | None
    head_hash: str  # the last good entry's hash: note it to detect a truncated tail later

    @property
    def ok(self) -> bool:
        return self.broken is None


_COLUMNS = [
    AuditEvent.__table__.c[name]
    for name in (
        *CANONICAL_FIELDS,
        "hash",
        "chain_version",
        "personal_salt",
        "personal_commitment",
    )
]


def _personal_problem(row: Mapping[str, Any]) -> str | None:
    """Why the row's personal fields disagree with its commitment (None if they agree).

    Erased: fields and salt null, the commitment kept. Present: the salt must reproduce the
    commitment. No personal fields at all: no salt and no commitment."""
    salt, committed = row["personal_salt"], row["personal_commitment"]
    present = any(v is not None for v in personal_values(row).values())
    if salt is not None:
        if committed is None or not hmac.compare_digest(commitment(salt, row), committed):
            return "its personal fields do not match their commitment"
        return None
    if present and int(row["chain_version"] or 1) >= CURRENT_VERSION:
        # (a version-1 entry without a salt, appended by old code during a rolling deploy,
        # has its address covered by its own hash)
        return "it has personal fields but no salt to check them with"
    return None


def _erased(row: Mapping[str, Any]) -> bool:
    return row["personal_commitment"] is not None and row["personal_salt"] is None


class _Walk:
    """The state of one verification walk (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.expected_seq, self.prev, self.checked = 1, GENESIS_HASH, 0
        self.legacy_count, self.legacy_digest = 0, GENESIS_HASH
        self.legacy_closed = False  # the first version-2 entry has been checked
        self.first_uncovered: int | None = None  # an erased legacy entry with no checkpoint

    def check(self, row: Mapping[str, Any]) -> BrokenLink | None:
        seq = int(row["seq"])
        if seq != self.expected_seq:
            return BrokenLink(
                self.expected_seq, "gap", f"entry {self.expected_seq} is missing (next is {seq})"
            )
        if row["prev_hash"] != self.prev:
            return BrokenLink(
                seq, "prev link mismatch", "its prev_hash is not the hash of the entry before it"
            )
        problem = _personal_problem(row)
        if problem is not None:
            return BrokenLink(seq, "personal fields mismatch", problem)
        version = int(row["chain_version"] or 1)
        if version >= CURRENT_VERSION:
            broken = self._close_legacy(row)
            if broken is not None:
                return broken
            hash_ok = entry_hash(row) == row["hash"]
        else:
            if not self.legacy_closed:
                self.legacy_count += 1
                self.legacy_digest = next_digest(self.legacy_digest, legacy_seal(row))
            if _erased(row):
                # its own hash covered the erased address: the checkpoint's digest covers it
                if self.legacy_closed:
                    return BrokenLink(
                        seq, "legacy digest mismatch", "an erased entry no checkpoint covers"
                    )
                if self.first_uncovered is None:
                    self.first_uncovered = seq
                hash_ok = True
            else:
                hash_ok = entry_hash(row) == row["hash"]
        if not hash_ok:
            return BrokenLink(seq, "hash mismatch", "its contents do not match its stored hash")
        self.prev, self.expected_seq, self.checked = row["hash"], seq + 1, self.checked + 1
        return None

    def _close_legacy(self, row: Mapping[str, Any]) -> BrokenLink | None:
        if self.legacy_closed:
            return None
        self.legacy_closed = True
        if self.legacy_count == 0:
            return None
        details = row["details"] or {}
        if (
            row["action"] != UPGRADE_ACTION
            or details.get("legacy_entries") != self.legacy_count
            or details.get("legacy_digest") != self.legacy_digest
        ):
            return BrokenLink(
                int(row["seq"]),
                "legacy digest mismatch",
                "the version-1 entries before it do not match the upgrade checkpoint",
            )
        self.first_uncovered = None
        return None

    def finish(self) -> BrokenLink | None:
        if self.first_uncovered is not None and not self.legacy_closed:
            return BrokenLink(
                self.first_uncovered,
                "legacy digest mismatch",
                "an erased entry no checkpoint covers",
            )
        return None


async def verify_chain(session: AsyncSession, *, batch_size: int = 1000) -> Verification:
    """Walk the whole chain in ``seq`` order, ``batch_size`` rows per query (keyset), and
    stop at the first broken link. Use a snapshot session, so the walk sees one state."""
    walk = _Walk()
    while True:
        rows = (
            (
                await session.execute(
                    select(*_COLUMNS)
                    .where(AuditEvent.seq >= walk.expected_seq)
                    .order_by(AuditEvent.seq)
                    .limit(batch_size)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return Verification(walk.checked, walk.finish(), walk.prev)
        for row in rows:
            broken = walk.check(dict(row))
            if broken is not None:
                return Verification(walk.checked, broken, walk.prev)
