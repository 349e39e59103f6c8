"""Signed access tokens (PyJWT with an explicit algorithm list).

Every token carries ``typ`` so a token minted for one purpose (a later refresh or MFA step)
is never accepted as another. Claims: sub, sid, jti, typ, iat, exp, auth_time, iss, aud.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ACCESS = "access"


class InvalidToken(Exception):
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
        secret: str,
        algorithm: str,
        issuer: str,
        audience: str,
        access_ttl_seconds: int,
    ) -> None:
        if algorithm == "none":
            raise ValueError("unsigned tokens are never allowed")
        self._secret = secret
        self._algorithm = algorithm
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
        return jwt.encode(payload, self._secret, algorithm=self._algorithm)

    def verify(self, token: str, *, expected_type: str = ACCESS) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "typ", "jti", "auth_time"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims.get("typ") != expected_type:
            raise InvalidToken("wrong token type")
        return TokenClaims(
            subject=str(claims["sub"]),
            token_type=str(claims["typ"]),
            token_id=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            auth_time=datetime.fromtimestamp(claims["auth_time"], UTC),
            session_id=claims.get("sid"),
        )
