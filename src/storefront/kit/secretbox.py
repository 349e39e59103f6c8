"""Authenticated encryption of secrets at rest (signing keys, TOTP seeds).

The key is derived (HKDF-SHA256) from the deployment secret ``STOREFRONT_AUTH__JWT_SECRET``,
one sub-key per purpose, so a database dump alone reveals no private key or TOTP seed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from storefront.kit.kdf import derive_key


class SecretBoxError(Exception):
    pass


class SecretBox:
    def __init__(self, secret: str, *, purpose: str) -> None:
        key = derive_key(secret, purpose)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._mac_key = derive_key(secret, "mac:" + purpose)

    def mac(self, data: bytes) -> str:
        """A keyed hash (HMAC-SHA256, hex): for storing high-entropy codes."""
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def seal(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise SecretBoxError("cannot decrypt: wrong secret or tampered value") from exc
