"""The audit log and security events.

``record`` buffers a tamper-evident audit entry on a session (chained in at commit);
``entries_about`` reads a user's entries for the GDPR export (minimised to their own data);
``erase_personal_fields`` nulls an erased user's addresses without breaking the chain.
Security events (sign-ins, refreshes, revocations, credential changes) go to a
``SecurityEventSink`` (a log line) and, through ``record_security_event``, into the audit
log. See docs/decisions/0082 and 0115.
"""

from storefront.auditlog.chain import Verification, verify_chain
from storefront.auditlog.events import (
    FORBIDDEN_DETAIL_KEYS,
    LoggingSecurityEventSink,
    SecurityEvent,
    SecurityEventSink,
)
from storefront.auditlog.log import (
    AuditDetailsRejected,
    entries_about,
    erase_personal_fields,
    record,
    record_security_event,
)
from storefront.auditlog.models import AuditEvent

__all__ = [
    "FORBIDDEN_DETAIL_KEYS",
    "AuditDetailsRejected",
    "AuditEvent",
    "LoggingSecurityEventSink",
    "SecurityEvent",
    "SecurityEventSink",
    "Verification",
    "entries_about",
    "erase_personal_fields",
    "record",
    "record_security_event",
    "verify_chain",
]
