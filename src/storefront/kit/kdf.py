"""Keys derived from the deployment secret: one HKDF-SHA256 sub-key per purpose."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for one purpose (HKDF-SHA256 of ``secret``, ``purpose`` as the info, no
    salt): the same secret and purpose always give the same key, another purpose another."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
    ).derive(secret.encode())
