"""Identity's business KPIs: accounts created and sign-ins refused. Names and labels are read
by the alert rules and dashboards in deploy/monitoring: never rename one."""

from __future__ import annotations

from prometheus_client import Counter

SIGNUPS = Counter("storefront_signups", "Accounts created.")
SIGNINS_FAILED = Counter(
    "storefront_signins_failed",
    "Sign-in attempts refused, by reason (bad_credentials, bad_mfa_code).",
    ["reason"],
)


def record_signup() -> None:
    SIGNUPS.inc()


def record_signin_failed(reason: str = "bad_credentials") -> None:
    SIGNINS_FAILED.labels(reason=reason).inc()
