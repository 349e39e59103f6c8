from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from storefront.auth.devices import COOKIE as DEVICE_COOKIE
from storefront.auth.tokens import MFA
from storefront.identity.deps import INVALID, Client, CurrentPair, CurrentPrincipal, CurrentUserRow
from storefront.identity.mfa import MfaService
from storefront.identity.models import User
from storefront.identity.schemas import (
    CodeIn,
    LoginIn,
    MfaRequiredOut,
    MfaVerifyIn,
    PasswordChangeIn,
    PasswordForm,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    SessionOut,
    TokenOut,
    TotpEnrolmentOut,
    UserOut,
    UserPatch,
)
from storefront.identity.service import (
    IdentityService,
    MfaChallenge,
    SignInService,
    require_recent_auth,
)
from storefront.identity.sessions import IssuedTokens, SessionService
from storefront.kit.errors import Unauthenticated
from storefront.web.deps import ReadSessionDep, ResourcesDep, SessionDep
from storefront.web.responses import NO_STORE, PROBLEM_RESPONSES, no_store
from storefront.web.route_policy import route_policy

router = APIRouter(tags=["identity"])
jwks_router = APIRouter(tags=["identity"])

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    429: {**PROBLEM_RESPONSES[401], "description": "Too many failed attempts (Retry-After)"},
}


def _pair(issued: IssuedTokens) -> TokenOut:
    return TokenOut(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


async def _sign_in(
    email: str,
    password: str,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> TokenOut | MfaRequiredOut:
    """Password sign-in (/auth/login and /auth/token): a token pair, or an MFA challenge.

    A correct password also (re)sets the device cookie that lets this browser sign in while
    guessing from elsewhere has locked unknown devices out (decision 0100)."""
    no_store(response)
    # past the hashing capacity, refuse before the throttle and the account are looked up
    resources.passwords.refuse_if_saturated("verify")
    service = SignInService(session, resources)
    result = await service.login(email, password, client)
    if service.device_cookie is not None:
        response.set_cookie(
            DEVICE_COOKIE,
            service.device_cookie,
            max_age=resources.security.devices.max_age_seconds,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
    if isinstance(result, MfaChallenge):
        return MfaRequiredOut(mfa_token=result.mfa_token)
    return _pair(result)


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=PROBLEM_RESPONSES,
)
@route_policy(rate="auth", account_field="email")
async def register(
    body: RegisterIn, session: SessionDep, resources: ResourcesDep, response: Response
) -> UserOut:
    resources.passwords.refuse_if_saturated("hash")  # before the address is looked up
    identity = IdentityService(session, resources.passwords, resources.vault)
    user = await identity.sign_up(
        email=body.email, password=body.password, display_name=body.display_name
    )
    no_store(response)
    return await _user_out(identity, user)


@router.post(
    "/auth/login",
    response_model=TokenOut | MfaRequiredOut,
    responses=AUTH_RESPONSES,
    summary="Sign in: a token pair, or an mfa_token when two-factor sign-in is on",
)
@route_policy(rate="auth", account_field="email")
async def login(
    body: LoginIn, session: SessionDep, resources: ResourcesDep, client: Client, response: Response
) -> TokenOut | MfaRequiredOut:
    return await _sign_in(body.email, body.password, session, resources, client, response)


@router.post(
    "/auth/token",
    response_model=TokenOut | MfaRequiredOut,
    responses=AUTH_RESPONSES,
    summary="OAuth2 password flow (for the docs page's Authorize button)",
)
@route_policy(rate="auth", account_field="username")
async def token(
    form: Annotated[PasswordForm, Depends()],
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> TokenOut | MfaRequiredOut:
    return await _sign_in(form.username, form.password, session, resources, client, response)


@router.post("/auth/mfa/verify", response_model=TokenOut, responses=AUTH_RESPONSES)
# the account the MFA token names, not the token's text (a new token is no new budget)
@route_policy(rate="auth", account_field="mfa_token", account_token=MFA)
async def mfa_verify(
    body: MfaVerifyIn,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> TokenOut:
    no_store(response)
    issued = await SignInService(session, resources).verify_mfa(body.mfa_token, body.code, client)
    return _pair(issued)


@router.post("/auth/refresh", response_model=TokenOut, responses=PROBLEM_RESPONSES)
async def refresh(
    body: RefreshIn,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> TokenOut:
    no_store(response)
    return _pair(await SessionService(session, resources).refresh(body.refresh_token, client))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEM_RESPONSES)
async def logout(
    pair: CurrentPair, session: SessionDep, resources: ResourcesDep, client: Client
) -> Response:
    user, principal = pair
    if principal.session_id is not None:
        await SessionService(session, resources).revoke(
            user.id, uuid.UUID(principal.session_id), "logout", client
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Cache-Control": NO_STORE})


@router.get("/auth/sessions", response_model=list[SessionOut], responses=PROBLEM_RESPONSES)
async def list_sessions(
    pair: CurrentPair, session: SessionDep, resources: ResourcesDep, response: Response
) -> list[SessionOut]:
    user, principal = pair
    no_store(response)
    rows = await SessionService(session, resources).list_live(user.id)
    return [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            user_agent=s.user_agent,
            ip_address=s.ip_address,
            current=str(s.id) == principal.session_id,
        )
        for s in rows
    ]


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
)
async def revoke_session(
    session_id: uuid.UUID,
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
) -> Response:
    user, _ = pair
    await SessionService(session, resources).revoke(user.id, session_id, "revoked_by_user", client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/mfa/totp",
    status_code=status.HTTP_201_CREATED,
    response_model=TotpEnrolmentOut,
    responses=PROBLEM_RESPONSES,
    summary="Start TOTP enrolment (needs a recent sign-in): a secret and an otpauth:// URI",
)
async def totp_enrol(
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> TotpEnrolmentOut:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    no_store(response)
    enrolment = await MfaService(session, resources).start_enrolment(user, client)
    return TotpEnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post(
    "/auth/mfa/totp/confirm",
    response_model=RecoveryCodesOut,
    responses=AUTH_RESPONSES,
    summary="Confirm TOTP with a code (needs a recent sign-in); ten one-time recovery codes",
)
async def totp_confirm(
    body: CodeIn,
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    response: Response,
) -> RecoveryCodesOut:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    no_store(response)
    codes = await MfaService(session, resources).confirm_enrolment(user, body.code, client)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete(
    "/auth/mfa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTH_RESPONSES,
    summary="Turn TOTP off (needs a recent sign-in and a current code or a recovery code)",
)
async def totp_remove(
    body: CodeIn, pair: CurrentPair, session: SessionDep, resources: ResourcesDep, client: Client
) -> Response:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    await MfaService(session, resources).turn_off(user.id, body.code, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTH_RESPONSES,
    summary="Change the password (needs a recent sign-in); other sessions are revoked",
)
@route_policy(rate="auth")
async def change_password(
    body: PasswordChangeIn,
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
) -> Response:
    user, principal = pair
    await SignInService(session, resources).change_password(
        user,
        auth_time=principal.auth_time,
        session_id=uuid.UUID(principal.session_id) if principal.session_id else None,
        current_password=body.current_password,
        new_password=body.new_password,
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _user_out(identity: IdentityService, user: User) -> UserOut:
    profile = await identity.profile(user)
    if profile is None:  # erased: cannot be signed in, but never show a sealed value
        raise Unauthenticated("This account was erased.", error="invalid_token")
    return UserOut(
        id=user.id,
        email=profile.email,
        display_name=profile.display_name,
        created_at=user.created_at,
    )


@router.get("/users/me", response_model=UserOut, responses=PROBLEM_RESPONSES)
async def me(
    principal: CurrentPrincipal,
    session: ReadSessionDep,
    resources: ResourcesDep,
    response: Response,
) -> UserOut:
    # a read with no transaction: the row and its data key in one statement, its only
    # round trip (the token was checked without SQL)
    identity = IdentityService(session, resources.passwords, resources.vault)
    user = await identity.get_active(principal.user_id)
    if user is None:
        raise Unauthenticated(INVALID, error="invalid_token")
    response.headers["Cache-Control"] = NO_STORE
    return await _user_out(identity, user)


@router.patch("/users/me", response_model=UserOut, responses=PROBLEM_RESPONSES)
async def update_me(
    body: UserPatch,
    user: CurrentUserRow,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> UserOut:
    identity = IdentityService(session, resources.passwords, resources.vault)
    updated = await identity.update_profile(user, display_name=body.display_name)
    no_store(response)
    return await _user_out(identity, updated)


@jwks_router.get(
    "/.well-known/jwks.json",
    summary="The public keys that verify access tokens (JWK Set, RFC 7517)",
)
async def jwks(resources: ResourcesDep, response: Response) -> dict[str, Any]:
    await resources.security.keys.ensure_loaded()
    # short caching: a verifier refetches soon after a rotation
    response.headers["Cache-Control"] = "public, max-age=300"
    return resources.security.keys.ring.jwks()
