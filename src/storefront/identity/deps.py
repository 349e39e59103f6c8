"""The caller's identity, for every domain's routes (identity's public interface)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from storefront.identity.models import User
from storefront.identity.service import IdentityService
from storefront.platform.errors import Unauthenticated
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.security.tokens import InvalidToken

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    is_admin: bool
    auth_time: datetime
    session_id: str | None


async def _current_user(
    runtime: RuntimeDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> tuple[User, Principal]:
    if token is None:
        raise Unauthenticated("Sign in and send the access token as a Bearer token.")
    try:
        claims = runtime.tokens.verify(token)
        user_id = uuid.UUID(claims.subject)
    except (InvalidToken, ValueError) as exc:
        raise Unauthenticated(
            "The access token is invalid or expired.", error="invalid_token"
        ) from exc
    user = await IdentityService(session, runtime.passwords).get_active(user_id)
    if user is None:
        raise Unauthenticated("The access token is invalid or expired.", error="invalid_token")
    return user, Principal(user.id, user.is_admin, claims.auth_time, claims.session_id)


async def current_principal(
    pair: Annotated[tuple[User, Principal], Depends(_current_user)],
) -> Principal:
    return pair[1]


async def current_user(pair: Annotated[tuple[User, Principal], Depends(_current_user)]) -> User:
    return pair[0]


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUserRow = Annotated[User, Depends(current_user)]
