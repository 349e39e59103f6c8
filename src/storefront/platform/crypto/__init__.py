"""Envelope encryption of personal data at rest (see docs/decisions/0081)."""

from storefront.platform.crypto.keys import KeyProvider, LocalKeyProvider, MasterKeyError
from storefront.platform.crypto.vault import (
    DataKeyDestroyed,
    DataKeyRow,
    PersonalDataVault,
    SealedValueError,
    is_sealed,
    vault_of,
)

__all__ = [
    "DataKeyDestroyed",
    "DataKeyRow",
    "KeyProvider",
    "LocalKeyProvider",
    "MasterKeyError",
    "PersonalDataVault",
    "SealedValueError",
    "is_sealed",
    "vault_of",
]
