"""The caller's identity, for every domain's routes (identity's public interface)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.exceptions import RedisError

from storefront.identity.models import User
from storefront.identity.service import IdentityService
from storefront.identity.sessions import ClientInfo
from storefront.platform.errors import SecurityBackendUnavailable, Unauthenticated
from storefront.platform.http.client_address import client_address
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.observability.logging import bind_user
from storefront.platform.runtime import Runtime
from storefront.platform.security.tokens import InvalidToken, TokenClaims, UnknownKey

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
INVALID = "The access token is invalid or expired."


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    is_admin: bool
    auth_time: datetime
    session_id: str | None


async def _verify(runtime: Runtime, token: str) -> TokenClaims:
    keys = runtime.security.keys
    await keys.ensure_loaded()
    try:
        return runtime.tokens.verify(token)
    except UnknownKey:
        # maybe another process rotated the keys a moment ago
        if not await keys.reload_for_unknown_kid():
            raise
        return runtime.tokens.verify(token)


async def _current_user(
    runtime: RuntimeDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> tuple[User, Principal]:
    if token is None:
        raise Unauthenticated("Sign in and send the access token as a Bearer token.")
    try:
        claims = await _verify(runtime, token)
        user_id = uuid.UUID(claims.subject)
    except (InvalidToken, ValueError) as exc:
        raise Unauthenticated(INVALID, error="invalid_token") from exc
    if claims.session_id is not None:
        try:
            revoked = await runtime.security.revocations.is_revoked(claims.session_id)
        except RedisError as exc:  # fail closed: never honour a possibly revoked token
            raise SecurityBackendUnavailable("Cannot check the token right now.") from exc
        if revoked:
            raise Unauthenticated(INVALID, error="invalid_token")
    user = await IdentityService(session, runtime.passwords, runtime.vault).get_active(user_id)
    if user is None:
        raise Unauthenticated(INVALID, error="invalid_token")
    bind_user(str(user.id))  # the access log line and later log lines name the caller
    return user, Principal(user.id, user.is_admin, claims.auth_time, claims.session_id)


async def current_principal(
    pair: Annotated[tuple[User, Principal], Depends(_current_user)],
) -> Principal:
    return pair[1]


async def current_user(pair: Annotated[tuple[User, Principal], Depends(_current_user)]) -> User:
    return pair[0]


def client_info(request: Request, runtime: RuntimeDep) -> ClientInfo:
    """The caller's address (through trusted proxies only) and user agent."""
    return ClientInfo(
        address=client_address(request.scope, runtime.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUserRow = Annotated[User, Depends(current_user)]
CurrentPair = Annotated[tuple[User, Principal], Depends(_current_user)]
Client = Annotated[ClientInfo, Depends(client_info)]
