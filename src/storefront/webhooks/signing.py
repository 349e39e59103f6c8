"""The webhook signing secret: generated here, sealed at rest with its own key."""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING

from storefront.kit.secretbox import SecretBox

if TYPE_CHECKING:
    from storefront.resources import Resources

SEALING_PURPOSE = "storefront webhook secrets"


def secret_box(resources: Resources) -> SecretBox:
    return SecretBox(resources.security.auth.jwt_secret.get_secret_value(), purpose=SEALING_PURPOSE)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
