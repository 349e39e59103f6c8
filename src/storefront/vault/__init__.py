"""Envelope encryption of personal data at rest (see docs/decisions/0081)."""

from storefront.kit.master_keys import KeyProvider, LocalKeyProvider, MasterKeyError
from storefront.vault.envelope import (
    DataKeyDestroyed,
    DataKeyRow,
    PersonalDataVault,
    SealedValueError,
    is_sealed,
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
]
