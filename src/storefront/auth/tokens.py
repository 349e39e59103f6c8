"""Signed access tokens: EdDSA (Ed25519) with a ``kid``, PyJWT with an explicit algorithm list.

Every token carries ``typ`` so a token minted for one purpose (an MFA step) is never accepted
as another. Claims: sub, sid, jti, typ, iat, exp, auth_time, iss, aud, and ``adm`` (the
account is a platform admin; set once when the account is created, so a token may carry it).
The header names the key (``kid``); a token whose kid is not in the key ring is refused as
``UnknownKey``.

A token that verified once is remembered (by its exact text) until it expires, so the same
token presented again costs a dictionary lookup, not a signature check: the remembered
result still requires the same public key to be in the ring and the token to be unexpired.
What can end a token before it expires (logout, a password change, erasure) is the
revocation list's business (auth/revocation.py), asked on every request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from storefront.auth.signing_keys import ALGORITHM, KeyRing

ACCESS = "access"
MFA = "mfa"


class InvalidToken(Exception):
    pass


class UnknownKey(InvalidToken):
    pass


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    token_type: str
    token_id: str
    issued_at: datetime
    expires_at: datetime
    auth_time: datetime
    session_id: str | None
    admin: bool | None = None  # None: the token predates the claim (ask the account)
    key_id: str | None = None  # the kid of the key that signed it


# tokens remembered after a successful verification (a bounded map; emptied when full)
VERIFIED_CACHE_SIZE = 8192


class TokenService:
    def __init__(
        self,
        *,
        keys: KeyRing,
        issuer: str,
        audience: str,
        access_ttl_seconds: int,
    ) -> None:
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self.access_ttl_seconds = access_ttl_seconds
        # token text -> (type, the public key that verified it, expiry as a Unix time, claims)
        self._verified: dict[str, tuple[str, object, float, TokenClaims]] = {}

    def issue(
        self,
        subject: str,
        *,
        token_type: str = ACCESS,
        ttl_seconds: int | None = None,
        session_id: str | None = None,
        auth_time: datetime | None = None,
        admin: bool | None = None,
        now: datetime | None = None,
    ) -> str:
        key = self.keys.signing_key
        if key is None or key.private_key is None:
            raise RuntimeError("no signing key loaded")
        now = now or datetime.now(UTC)
        ttl = ttl_seconds if ttl_seconds is not None else self.access_ttl_seconds
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "typ": token_type,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl)).timestamp()),
            "auth_time": int((auth_time or now).timestamp()),
        }
        if session_id is not None:
            payload["sid"] = session_id
        if admin is not None:
            payload["adm"] = admin
        return jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )

    def verify(self, token: str, *, expected_type: str = ACCESS) -> TokenClaims:
        known = self._verified.get(token)
        if known is not None:
            token_type, public_key, expires, claims = known
            kid_key = self.keys.public_key(claims.key_id) if claims.key_id else None
            if kid_key is public_key and time.time() < expires and token_type == expected_type:
                return claims
            # expired, its key left the ring, or asked as another type: the full check says why
            del self._verified[token]
        claims = self._verify(token, expected_type)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (
            expected_type,
            self.keys.public_key(claims.key_id) if claims.key_id else None,
            claims.expires_at.timestamp(),
            claims,
        )
        return claims

    def _verify(self, token: str, expected_type: str) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no key id")
        public_key = self.keys.public_key(kid)
        if public_key is None:
            raise UnknownKey("unknown key id")
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "typ", "jti", "auth_time"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims.get("typ") != expected_type:
            raise InvalidToken("wrong token type")
        sid = claims.get("sid")
        if sid is not None and not isinstance(sid, str):
            raise InvalidToken("malformed session id")
        admin = claims.get("adm")
        if admin is not None and not isinstance(admin, bool):
            raise InvalidToken("malformed admin claim")
        try:
            return TokenClaims(
                subject=str(claims["sub"]),
                token_type=str(claims["typ"]),
                token_id=str(claims["jti"]),
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                auth_time=datetime.fromtimestamp(claims["auth_time"], UTC),
                session_id=sid,
                admin=admin,
                key_id=kid,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidToken("malformed claims") from exc
