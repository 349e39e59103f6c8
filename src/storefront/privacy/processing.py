"""The record of processing (GDPR article 30) and the consent purposes, in one place.

docs/privacy.md shows the same table; every export carries it, with the retention periods
of the running configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storefront.settings import Settings

# Purposes a user can consent to (or withdraw from). Anything else is refused (422).
CONSENT_PURPOSES: dict[str, str] = {
    "marketing_email": "News and offers from the shops by email.",
    "product_analytics": "Use of the service measured to improve it (no advertising).",
}


@dataclass(frozen=True, slots=True)
class Activity:
    name: str
    purpose: str
    legal_basis: str
    categories: tuple[str, ...]
    recipients: tuple[str, ...]
    retention: str


def activities(settings: Settings) -> list[Activity]:
    """What is processed, why, for whom and how long (with the configured periods)."""
    auth = settings.auth
    privacy = settings.privacy
    session_days = auth.session_absolute_lifetime_seconds // 86400
    return [
        Activity(
            "account",
            "Sign-in and the customer account.",
            "GDPR 6(1)(b): contract",
            ("email address", "display name", "password hash", "two-factor seed"),
            ("no one outside the operator",),
            "Until the account is erased (DELETE /users/me).",
        ),
        Activity(
            "sessions",
            "Keeping a user signed in; detecting stolen tokens.",
            "GDPR 6(1)(b) contract and 6(1)(f) security",
            ("client address", "user agent", "sign-in times"),
            ("no one outside the operator",),
            f"A session lasts at most {session_days} days; its record is deleted "
            f"{privacy.session_retention_days} days after it ended.",
        ),
        Activity(
            "orders",
            "Fulfilling orders; accounting.",
            "GDPR 6(1)(b) contract and 6(1)(c) legal obligation (accounting)",
            ("shipping address", "phone number", "what was bought and for how much"),
            ("the shop the order was placed with (its staff)", "the mail provider (SMTP)"),
            "Kept for accounting as long as the law requires; on erasure the address and "
            "phone become unreadable and the order stays without personal data.",
        ),
        Activity(
            "consents",
            "Proof of what the user consented to, and when.",
            "GDPR 6(1)(c) and 7(1): demonstrating consent",
            ("purpose", "granted or withdrawn", "time"),
            ("no one outside the operator",),
            "Kept as long as the account exists; after erasure only under an opaque id.",
        ),
        Activity(
            "audit_log",
            "A tamper-evident trail of security-relevant actions.",
            "GDPR 6(1)(f): security, accountability (article 5(2))",
            ("user id", "client address", "action", "time"),
            (
                "the operator; a shop's owners see the shop's entries without addresses "
                "and without the ids of people outside the shop's staff",
            ),
            "Append-only; kept for the life of the service (no names or emails in it). "
            f"Client addresses are removed {privacy.audit_address_retention_days} days "
            "after the entry, and at once when the user is erased.",
        ),
        Activity(
            "idempotency",
            "Answering a retried request with the first answer.",
            "GDPR 6(1)(b): contract",
            ("the stored response (may contain an order's address)",),
            ("no one outside the operator",),
            f"{settings.idempotency.ttl_hours} hours; deleted on erasure.",
        ),
        Activity(
            "data_exports",
            "A copy of a user's data on request (GDPR articles 15 and 20).",
            "GDPR 6(1)(c): legal obligation",
            ("everything above",),
            ("the user only",),
            f"The archive is deleted {privacy.export_ttl_hours} hours after it is ready; "
            f"the request's record {privacy.export_record_days} days later.",
        ),
    ]


def record_of_processing(settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "activity": a.name,
            "purpose": a.purpose,
            "legal_basis": a.legal_basis,
            "categories": list(a.categories),
            "recipients": list(a.recipients),
            "retention": a.retention,
        }
        for a in activities(settings)
    ]
