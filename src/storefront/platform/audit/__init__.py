"""The audit log and security events.

``record`` buffers a tamper-evident audit entry on a session (chained in at commit);
``entries_about`` reads a user's entries for the GDPR export. Security events (sign-ins,
refreshes, revocations, credential changes) go to a ``SecurityEventSink`` (a log line) and,
through ``record_security_event``, into the audit log. See docs/decisions/0082.
"""

from storefront.platform.audit.chain import Verification, verify_chain
from storefront.platform.audit.events import (
    FORBIDDEN_DETAIL_KEYS,
    LoggingSecurityEventSink,
    SecurityEvent,
    SecurityEventSink,
)
from storefront.platform.audit.log import (
    AuditDetailsRejected,
    entries_about,
    record,
    record_security_event,
)
from storefront.platform.audit.models import AuditEvent

__all__ = [
    "FORBIDDEN_DETAIL_KEYS",
    "AuditDetailsRejected",
    "AuditEvent",
    "LoggingSecurityEventSink",
    "SecurityEvent",
    "SecurityEventSink",
    "Verification",
    "entries_about",
    "record",
    "record_security_event",
    "verify_chain",
]
