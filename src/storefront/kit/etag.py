"""Strong entity tags computed from the exact bytes of a representation."""

from __future__ import annotations

import hashlib


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def none_match(if_none_match: str | None, etag: str) -> bool:
    """True when If-None-Match matches (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == opaque for t in _tags(if_none_match))


def match(if_match: str | None, etag: str) -> bool:
    """True when If-Match is absent or matches (strong comparison, RFC 9110 13.1.1)."""
    if if_match is None:
        return True
    return any(t == "*" or (not t.startswith("W/") and t == etag) for t in _tags(if_match))
