"""Password policy after NIST SP 800-63B: length, a blocklist, no composition rules.

Passwords are NFKC-normalised (so the same characters typed on different keyboards match),
must be 12-128 characters (never truncated: argon2 hashes every byte) and must not be one of
the 30,000 most common passwords (shipped as package data, see docs/decisions) or the
account's own email address.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib import resources

from storefront.platform.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 128


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = (
        resources.files("storefront.identity")
        .joinpath("data/common-passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def check_password(password: str, *, email: str | None = None) -> str:
    """The normalised password, or WeakPassword (422) saying why it is refused."""
    normalized = normalize_password(password)
    if len(normalized) < MIN_LENGTH:
        raise WeakPassword(f"The password must have at least {MIN_LENGTH} characters.")
    if len(normalized) > MAX_LENGTH:
        raise WeakPassword(f"The password must have at most {MAX_LENGTH} characters.")
    folded = normalized.casefold()
    if folded in common_passwords():
        raise WeakPassword(
            "This password is one of the most commonly used passwords; choose another."
        )
    if email and folded in {email.casefold(), email.split("@")[0].casefold()}:
        raise WeakPassword("The password must not be your email address.")
    return normalized
