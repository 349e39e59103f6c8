"""Keys derived from the deployment secret must never change: secret boxes (TOTP seeds,
signing keys), development master keys and sealed idempotent responses written by an earlier
release are opened with keys derived again at start-up."""

from __future__ import annotations

import hashlib
import hmac

from storefront.kit.kdf import derive_key
from storefront.kit.secretbox import SecretBox

SECRET = "correct horse battery staple"


def test_the_derivation_is_hkdf_sha256_with_the_purpose_as_info() -> None:
    assert derive_key(SECRET, "idempotency").hex() == (
        "65675f67e84177d1a60578d0a42e923c3feccab29846a918cd29a1e852241f6b"
    )
    assert derive_key(SECRET, "mac:totp").hex() == (
        "e86a5714964cd04d924ab377945c539054aac746ad14ffaddfb9511718a66e2f"
    )


def test_each_purpose_and_secret_gets_its_own_key() -> None:
    keys = {
        derive_key(SECRET, "a"),
        derive_key(SECRET, "b"),
        derive_key(SECRET + "!", "a"),
    }
    assert len(keys) == 3
    assert all(len(key) == 32 for key in keys)


def test_a_secret_box_macs_with_the_mac_purpose_key() -> None:
    box = SecretBox(SECRET, purpose="totp")
    expected = hmac.new(derive_key(SECRET, "mac:totp"), b"code", hashlib.sha256).hexdigest()
    assert box.mac(b"code") == expected
    assert box.open(box.seal(b"seed")) == b"seed"
