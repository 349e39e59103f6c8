"""The key material of a deployment, from its settings (STOREFRONT_PRIVACY__*)."""

from __future__ import annotations

from storefront.kit.kdf import derive_key
from storefront.kit.master_keys import (
    DEV_VERSION,
    LocalKeyProvider,
    MasterKeyError,
    decode_key,
    parse_master_keys,
    read_key_file,
)
from storefront.settings import Environment, Settings
from storefront.vault.envelope import PersonalDataVault

DEV_MASTER_PURPOSE = "storefront personal data master key (development only)"
DEV_BLIND_PURPOSE = "storefront email blind index (development only)"


def key_material(settings: Settings) -> tuple[LocalKeyProvider, bytes]:
    """(master key provider, blind-index key). Without configured keys, development and
    tests derive both from the JWT secret; production never gets here without them (the
    settings refuse to load) and fails here if the key file lacks a blind-index key."""
    privacy = settings.privacy
    blind: bytes | None = None
    if privacy.master_keys is not None:
        keys = parse_master_keys(privacy.master_keys.get_secret_value())
    elif privacy.master_key_file is not None:
        keys, blind = read_key_file(privacy.master_key_file)
    elif settings.environment is Environment.production:
        raise MasterKeyError("production needs STOREFRONT_PRIVACY__MASTER_KEYS or ..._FILE")
    else:
        secret = settings.auth.jwt_secret.get_secret_value()
        keys = [(DEV_VERSION, derive_key(secret, purpose=DEV_MASTER_PURPOSE))]
    if privacy.blind_index_key is not None:
        blind = decode_key(privacy.blind_index_key.get_secret_value(), what="blind_index_key")
    if blind is None:
        if settings.environment is Environment.production:
            raise MasterKeyError("production needs STOREFRONT_PRIVACY__BLIND_INDEX_KEY")
        blind = derive_key(settings.auth.jwt_secret.get_secret_value(), purpose=DEV_BLIND_PURPOSE)
    return LocalKeyProvider(keys), blind


def build_vault(settings: Settings) -> PersonalDataVault:
    provider, blind = key_material(settings)
    return PersonalDataVault(provider, blind_index_key=blind)
