"""Security events: one interface for every sign-in, refresh, revocation and credential change.

Events name what happened to whom (ids, the client address, the user agent, an outcome) and
never carry a password, token, TOTP code or recovery code. The default sink writes one
structured log record per event (logger ``storefront.security``, the event in ``extra``);
identity also records each event in the audit log (``record_security_event``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from storefront.kit.db import utcnow

logger = logging.getLogger("storefront.security")

# Detail keys that must never appear in an event, whatever a caller passes.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "mfa_token",
        "code",
        "secret",
        "recovery_code",
    }
)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    name: str  # e.g. "login.succeeded", "refresh.reuse_detected", "mfa.totp.removed"
    outcome: str = "success"  # success | failure | denied
    user_id: str | None = None
    session_id: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        leaked = FORBIDDEN_DETAIL_KEYS & set(self.details)
        if leaked:
            raise ValueError(f"security events never carry secrets: {sorted(leaked)}")

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["occurred_at"] = self.occurred_at.isoformat()
        return record


class SecurityEventSink(Protocol):
    async def emit(self, event: SecurityEvent) -> None: ...


class LoggingSecurityEventSink:
    """One structured log record per event (``extra={"security_event": {...}}``)."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log

    async def emit(self, event: SecurityEvent) -> None:
        record = event.as_record()
        level = logging.INFO if event.outcome == "success" else logging.WARNING
        self._log.log(
            level,
            "security event %s (%s) user=%s session=%s",
            event.name,
            event.outcome,
            event.user_id,
            event.session_id,
            extra={"security_event": record},
        )
