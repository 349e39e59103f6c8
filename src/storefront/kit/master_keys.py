"""Master keys: the key-provider interface and the local provider (settings or a key file).

A master key never encrypts personal data itself; it wraps (AES-256-GCM) the per-subject
data keys stored in the ``data_keys`` table. A KMS-backed provider implements the same three
members: ``current_version``, ``wrap`` (always under the current version) and ``unwrap``
(under the version the wrapped key names).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
DEV_VERSION = "dev"
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class MasterKeyError(ValueError):
    """The master key configuration is unusable, or a wrapped key does not unwrap."""


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys; a KMS could implement this."""

    @property
    def current_version(self) -> str: ...

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Encrypt ``data_key`` under the current master key: (master version, wrapped)."""
        ...

    def unwrap(self, wrapped: bytes, *, version: str, context: bytes) -> bytes:
        """The data key; raises MasterKeyError for an unknown version or a wrong context."""
        ...


def decode_key(text: str, *, what: str) -> bytes:
    """A 32-byte key from base64 (standard or URL-safe, padding optional)."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MasterKeyError(f"{what} is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise MasterKeyError(f"{what} must be {KEY_BYTES} bytes, not {len(raw)}")
    return raw


def _check_version(version: str) -> str:
    if not version or len(version) > 32 or not set(version) <= _VERSION_CHARS:
        raise MasterKeyError(
            f"master key version {version!r} must be 1-32 letters, digits, '-' or '_'"
        )
    return version


def parse_master_keys(text: str) -> list[tuple[str, bytes]]:
    """``"v2:<base64>,v1:<base64>"`` -> [(version, key)], the current version first."""
    keys: list[tuple[str, bytes]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        version, sep, material = entry.partition(":")
        if not sep:
            raise MasterKeyError("each master key is written '<version>:<base64 key>'")
        version = _check_version(version.strip())
        keys.append((version, decode_key(material, what=f"master key {version}")))
    if not keys:
        raise MasterKeyError("no master key given")
    if len({version for version, _ in keys}) != len(keys):
        raise MasterKeyError("master key versions must be unique")
    return keys


def read_key_file(path: str | os.PathLike[str]) -> tuple[list[tuple[str, bytes]], bytes | None]:
    """A JSON key file: ``{"current": "v2", "keys": {"v2": "...", "v1": "..."},
    "blind_index_key": "..."}`` -> (master keys, current first; the blind-index key or None)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MasterKeyError(f"cannot read the master key file: {type(exc).__name__}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), Mapping):
        raise MasterKeyError("the master key file needs a 'keys' object")
    current = data.get("current")
    entries = data["keys"]
    if not isinstance(current, str) or current not in entries:
        raise MasterKeyError("the master key file's 'current' must name one of its keys")
    keys = [
        (_check_version(str(version)), decode_key(str(material), what=f"master key {version}"))
        for version, material in entries.items()
    ]
    keys.sort(key=lambda item: item[0] != current)  # current first, the rest in file order
    blind = data.get("blind_index_key")
    return keys, None if blind is None else decode_key(str(blind), what="blind_index_key")


class LocalKeyProvider:
    """Master keys held by this process (from settings or a key file)."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise MasterKeyError("no master key given")
        versions = [_check_version(version) for version, _ in keys]
        if len(set(versions)) != len(versions):
            raise MasterKeyError("master key versions must be unique")
        for version, key in keys:
            if len(key) != KEY_BYTES:
                raise MasterKeyError(f"master key {version} must be {KEY_BYTES} bytes")
        self._current = versions[0]
        self._ciphers = {version: AESGCM(key) for version, key in keys}

    @classmethod
    def from_string(cls, text: str) -> LocalKeyProvider:
        return cls(parse_master_keys(text))

    @property
    def current_version(self) -> str:
        return self._current

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    @staticmethod
    def _aad(version: str, context: bytes) -> bytes:
        return b"storefront-dk|" + version.encode() + b"|" + context

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        version = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[version].encrypt(nonce, data_key, self._aad(version, context))
        return version, nonce + sealed

    def unwrap(self, wrapped: bytes, *, version: str, context: bytes) -> bytes:
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise MasterKeyError(f"master key version {version!r} is not configured")
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, self._aad(version, context))
        except InvalidTag as exc:
            raise MasterKeyError("a data key does not unwrap (wrong master key or row)") from exc
