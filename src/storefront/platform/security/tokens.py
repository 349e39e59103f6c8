"""Signed access tokens: EdDSA (Ed25519) with a ``kid``, PyJWT with an explicit algorithm list.

Every token carries ``typ`` so a token minted for one purpose (an MFA step) is never accepted
as another. Claims: sub, sid, jti, typ, iat, exp, auth_time, iss, aud. The header names the
key (``kid``); a token whose kid is not in the key ring is refused as ``UnknownKey``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from storefront.platform.security.keys import ALGORITHM, KeyRing

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

    def issue(
        self,
        subject: str,
        *,
        token_type: str = ACCESS,
        ttl_seconds: int | None = None,
        session_id: str | None = None,
        auth_time: datetime | None = None,
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
        return jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )

    def verify(self, token: str, *, expected_type: str = ACCESS) -> TokenClaims:
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
        try:
            return TokenClaims(
                subject=str(claims["sub"]),
                token_type=str(claims["typ"]),
                token_id=str(claims["jti"]),
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                auth_time=datetime.fromtimestamp(claims["auth_time"], UTC),
                session_id=sid,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidToken("malformed claims") from exc
