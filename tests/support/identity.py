"""Helpers for identity tests: hand-built JWTs and direct changes to user rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from storefront.auth.signing_keys import SigningKey, generate_key
from storefront.identity.models import User
from storefront.resources import Resources
from tests.support.factories import UserHandle

ISSUER = "storefront"
AUDIENCE = "storefront-api"


def access_claims(subject: str, **overrides: Any) -> dict[str, Any]:
    """A complete, valid set of access-token claims; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "auth_time": now,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(claims: dict[str, Any], *, alg: str = "none", signature: str = "") -> str:
    """A JWT with an arbitrary header ``alg`` and the given (possibly empty) signature."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{signature}"


def signed_token(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def peek_claims(token: str) -> dict[str, Any]:
    """The token's claims, read without verification (for assertions only)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def set_user(resources: Resources, user_id: str, **values: Any) -> None:
    """Change a user row directly (e.g. is_admin, is_active), bypassing the API."""
    async with resources.sessionmaker() as session, session.begin():
        result = await session.execute(
            update(User).where(User.id == uuid.UUID(user_id)).values(**values)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def promote_to_admin(resources: Resources, user: UserHandle) -> None:
    """Make the account a platform admin (as an operator would in the database) and give the
    handle a fresh access token: a promotion takes effect with the account's next token, as
    its next sign-in or refresh gives (decision 0136)."""
    await set_user(resources, user.id, is_admin=True)
    user.token = resources.tokens.issue(user.id, admin=True)


async def user_row(resources: Resources, user_id: str) -> User:
    async with resources.sessionmaker() as session:
        stmt = select(User).where(User.id == uuid.UUID(user_id))
        return (await session.execute(stmt)).scalar_one()


async def count_users(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        return len((await session.execute(select(User.id))).all())


def sign(resources: Resources, claims: dict[str, Any], *, kid: str | None = "current") -> str:
    """Sign claims with the app's own current key (EdDSA), like the server does."""
    key = resources.security.keys.ring.signing_key
    assert key is not None
    assert key.private_key is not None
    headers = {} if kid is None else {"kid": key.kid if kid == "current" else kid}
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers=headers)


def private_half(key: SigningKey) -> Ed25519PrivateKey:
    """The key's private half, which a key made by ``generate_key`` always has."""
    assert key.private_key is not None, key.kid
    return key.private_key


def foreign_signed(claims: dict[str, Any], *, kid: str) -> str:
    """Signed with a freshly generated key the server never saw, naming ``kid``."""
    key = generate_key()
    return jwt.encode(claims, private_half(key), algorithm="EdDSA", headers={"kid": kid})


def hmac_with_public_key(resources: Resources, claims: dict[str, Any]) -> str:
    """Algorithm confusion: HS256 keyed with the server's *public* key bytes."""
    key = resources.security.keys.ring.signing_key
    assert key is not None
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(raw, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"
