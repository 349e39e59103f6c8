"""The caller's identity, for every domain's routes (identity's public interface)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.exceptions import RedisError

from storefront.auth.devices import COOKIE as DEVICE_COOKIE
from storefront.auth.principal import Principal
from storefront.auth.tokens import InvalidToken, TokenClaims, UnknownKey
from storefront.identity.models import User
from storefront.identity.repository import UserRepository
from storefront.identity.service import IdentityService
from storefront.identity.sessions import ClientInfo
from storefront.kit.client_address import client_address
from storefront.kit.errors import SecurityBackendUnavailable, Unauthenticated
from storefront.resources import Resources
from storefront.telemetry.logging import bind_user
from storefront.web.deps import ResourcesDep, SessionDep
from storefront.web.paths import API_PREFIX

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/auth/token", auto_error=False)
INVALID = "The access token is invalid or expired."


async def _verify(resources: Resources, token: str) -> TokenClaims:
    keys = resources.security.keys
    await keys.ensure_loaded()
    try:
        return resources.tokens.verify(token)
    except UnknownKey:
        # maybe another process rotated the keys a moment ago
        if not await keys.reload_for_unknown_kid():
            raise
        return resources.tokens.verify(token)


async def _principal(
    resources: ResourcesDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """The caller, from the access token alone: its signature and lifetime (remembered per
    token, auth/tokens.py), then one revocation check of its session and its account (one
    Redis round trip; in-process on the embedded default). No SQL: an account that is
    erased has its tokens revoked at once (identity/personal_data.py), so the revocation
    list answers what the user row used to. Without Redis and with several workers the
    account row is read too (decision 0136)."""
    if token is None:
        raise Unauthenticated("Sign in and send the access token as a Bearer token.")
    try:
        claims = await _verify(resources, token)
        user_id = uuid.UUID(claims.subject)
    except (InvalidToken, ValueError) as exc:
        raise Unauthenticated(INVALID, error="invalid_token") from exc
    try:
        revoked = await resources.security.revocations.is_revoked(claims.session_id, claims.subject)
    except RedisError as exc:  # fail closed: never honour a possibly revoked token
        raise SecurityBackendUnavailable("Cannot check the token right now.") from exc
    if revoked:
        raise Unauthenticated(INVALID, error="invalid_token")
    is_admin = claims.admin
    # ask the account itself when the token claims admin rights (a demotion takes effect at
    # once; admins are few), when it predates the claim, or when revocations are not shared
    # (no Redis) but several worker processes serve: another worker's erasure then shows
    # only in the database. A customer's token (adm false) costs no SQL.
    if is_admin is not False or (resources.redis is None and resources.settings.workers > 1):
        async with resources.sessionmaker() as session:
            user = await UserRepository(session).get_active(user_id)
        if user is None:
            raise Unauthenticated(INVALID, error="invalid_token")
        is_admin = user.is_admin
    bind_user(str(user_id))  # the access log line and later log lines name the caller
    return Principal(user_id, is_admin, claims.auth_time, claims.session_id)


async def _current_user(
    resources: ResourcesDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(_principal)],
) -> tuple[User, Principal]:
    """The caller and their user row, read in the request's session (one statement: the
    row and its data key), for routes that read or change the account itself."""
    user = await IdentityService(session, resources.passwords, resources.vault).get_active(
        principal.user_id
    )
    if user is None:
        raise Unauthenticated(INVALID, error="invalid_token")
    return user, Principal(user.id, user.is_admin, principal.auth_time, principal.session_id)


async def current_principal(
    principal: Annotated[Principal, Depends(_principal)],
) -> Principal:
    return principal


async def current_user(pair: Annotated[tuple[User, Principal], Depends(_current_user)]) -> User:
    return pair[0]


def client_info(request: Request, resources: ResourcesDep) -> ClientInfo:
    """The caller's address (through trusted proxies only), user agent and device cookie."""
    return ClientInfo(
        address=client_address(request.scope, resources.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
        device_cookie=request.cookies.get(DEVICE_COOKIE),
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUserRow = Annotated[User, Depends(current_user)]
CurrentPair = Annotated[tuple[User, Principal], Depends(_current_user)]
Client = Annotated[ClientInfo, Depends(client_info)]


async def optional_principal(
    resources: ResourcesDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal | None:
    """The caller when a token is sent (checked as for ``CurrentPrincipal``: a bad one is
    still 401), None when anonymous: for public reads whose links depend on who asks."""
    if token is None:
        return None
    return await _principal(resources, token)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
