from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from storefront.identity.deps import Client, CurrentPair, CurrentUserRow
from storefront.identity.mfa import MfaService
from storefront.identity.models import User
from storefront.identity.schemas import (
    CodeIn,
    LoginIn,
    MfaRequiredOut,
    MfaVerifyIn,
    PasswordChangeIn,
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
    BAD_CODE,
    IdentityService,
    MfaChallenge,
    SignInService,
    require_recent_auth,
)
from storefront.identity.sessions import ClientInfo, IssuedTokens, SessionService, emit
from storefront.platform.audit import SecurityEvent, record
from storefront.platform.errors import NotFound, Unauthenticated
from storefront.platform.http.deps import RuntimeDep, SessionDep
from storefront.platform.http.responses import NO_STORE, PROBLEM_RESPONSES, no_store

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
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> TokenOut | MfaRequiredOut:
    """Password sign-in (/auth/login and /auth/token): a token pair, or an MFA challenge."""
    no_store(response)
    result = await SignInService(session, runtime).login(email, password, client)
    if isinstance(result, MfaChallenge):
        return MfaRequiredOut(mfa_token=result.mfa_token)
    return _pair(result)


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=PROBLEM_RESPONSES,
)
async def register(
    body: RegisterIn, session: SessionDep, runtime: RuntimeDep, response: Response
) -> UserOut:
    identity = IdentityService(session, runtime.passwords, runtime.vault)
    user = await identity.register(
        email=body.email, password=body.password, display_name=body.display_name
    )
    record(session, "user.registered", object_type="user", object_id=user.id, actor_id=user.id)
    no_store(response)
    return await _user_out(identity, user)


@router.post(
    "/auth/login",
    response_model=TokenOut | MfaRequiredOut,
    responses=AUTH_RESPONSES,
    summary="Sign in: a token pair, or an mfa_token when two-factor sign-in is on",
)
async def login(
    body: LoginIn, session: SessionDep, runtime: RuntimeDep, client: Client, response: Response
) -> TokenOut | MfaRequiredOut:
    return await _sign_in(body.email, body.password, session, runtime, client, response)


@router.post(
    "/auth/token",
    response_model=TokenOut | MfaRequiredOut,
    responses=AUTH_RESPONSES,
    summary="OAuth2 password flow (for the docs page's Authorize button)",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> TokenOut | MfaRequiredOut:
    return await _sign_in(form.username, form.password, session, runtime, client, response)


@router.post("/auth/mfa/verify", response_model=TokenOut, responses=AUTH_RESPONSES)
async def mfa_verify(
    body: MfaVerifyIn,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> TokenOut:
    no_store(response)
    issued = await SignInService(session, runtime).verify_mfa(body.mfa_token, body.code, client)
    return _pair(issued)


@router.post("/auth/refresh", response_model=TokenOut, responses=PROBLEM_RESPONSES)
async def refresh(
    body: RefreshIn,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> TokenOut:
    no_store(response)
    return _pair(await SessionService(session, runtime).refresh(body.refresh_token, client))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEM_RESPONSES)
async def logout(
    pair: CurrentPair, session: SessionDep, runtime: RuntimeDep, client: Client
) -> Response:
    user, principal = pair
    if principal.session_id is not None:
        await SessionService(session, runtime).revoke(
            user.id, uuid.UUID(principal.session_id), "logout", client
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Cache-Control": NO_STORE})


@router.get("/auth/sessions", response_model=list[SessionOut], responses=PROBLEM_RESPONSES)
async def list_sessions(
    pair: CurrentPair, session: SessionDep, runtime: RuntimeDep, response: Response
) -> list[SessionOut]:
    user, principal = pair
    no_store(response)
    rows = await SessionService(session, runtime).list_live(user.id)
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
    runtime: RuntimeDep,
    client: Client,
) -> Response:
    user, _ = pair
    await SessionService(session, runtime).revoke(user.id, session_id, "revoked_by_user", client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/mfa/totp",
    status_code=status.HTTP_201_CREATED,
    response_model=TotpEnrolmentOut,
    responses=PROBLEM_RESPONSES,
    summary="Start TOTP enrolment: a secret and an otpauth:// URI for an authenticator app",
)
async def totp_enrol(
    user: CurrentUserRow,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> TotpEnrolmentOut:
    no_store(response)
    enrolment = await MfaService(session, runtime).enrol(user)
    await emit(runtime, _event("mfa.totp.enrolment_started", user.id, client), session=session)
    return TotpEnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post(
    "/auth/mfa/totp/confirm",
    response_model=RecoveryCodesOut,
    responses=PROBLEM_RESPONSES,
    summary="Confirm TOTP with a code; returns ten one-time recovery codes (shown once)",
)
async def totp_confirm(
    body: CodeIn,
    user: CurrentUserRow,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
    response: Response,
) -> RecoveryCodesOut:
    no_store(response)
    codes = await MfaService(session, runtime).confirm(user, body.code)
    if not codes:
        await emit(
            runtime, _event("mfa.totp.confirm_failed", user.id, client, "failure"), session=session
        )
        raise Unauthenticated(BAD_CODE)
    await emit(runtime, _event("mfa.totp.enabled", user.id, client), session=session)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete(
    "/auth/mfa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
    summary="Turn TOTP off (needs a recent sign-in and a current code or a recovery code)",
)
async def totp_remove(
    body: CodeIn, pair: CurrentPair, session: SessionDep, runtime: RuntimeDep, client: Client
) -> Response:
    user, principal = pair
    require_recent_auth(runtime, principal.auth_time)
    mfa = MfaService(session, runtime)
    if not await mfa.enabled(user.id):
        raise NotFound("Two-factor sign-in is not on.")
    if await mfa.verify(user.id, body.code) is None:
        await emit(
            runtime, _event("mfa.totp.remove_failed", user.id, client, "failure"), session=session
        )
        raise Unauthenticated(BAD_CODE)
    await mfa.remove(user.id)
    await emit(runtime, _event("mfa.totp.removed", user.id, client), session=session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROBLEM_RESPONSES,
    summary="Change the password (needs a recent sign-in); other sessions are revoked",
)
async def change_password(
    body: PasswordChangeIn,
    pair: CurrentPair,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Client,
) -> Response:
    user, principal = pair
    await SignInService(session, runtime).change_password(
        user,
        auth_time=principal.auth_time,
        session_id=uuid.UUID(principal.session_id) if principal.session_id else None,
        current_password=body.current_password,
        new_password=body.new_password,
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _event(
    name: str, user_id: uuid.UUID, client: ClientInfo, outcome: str = "success"
) -> SecurityEvent:
    return SecurityEvent(
        name,
        outcome=outcome,
        user_id=str(user_id),
        client_address=client.address,
        user_agent=client.user_agent,
    )


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
    user: CurrentUserRow, session: SessionDep, runtime: RuntimeDep, response: Response
) -> UserOut:
    response.headers["Cache-Control"] = NO_STORE
    return await _user_out(IdentityService(session, runtime.passwords, runtime.vault), user)


@router.patch("/users/me", response_model=UserOut, responses=PROBLEM_RESPONSES)
async def update_me(
    body: UserPatch,
    user: CurrentUserRow,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> UserOut:
    identity = IdentityService(session, runtime.passwords, runtime.vault)
    updated = await identity.update_profile(user, display_name=body.display_name)
    no_store(response)
    return await _user_out(identity, updated)


@jwks_router.get(
    "/.well-known/jwks.json",
    summary="The public keys that verify access tokens (JWK Set, RFC 7517)",
)
async def jwks(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    await runtime.security.keys.ensure_loaded()
    # short caching: a verifier refetches soon after a rotation
    response.headers["Cache-Control"] = "public, max-age=300"
    return runtime.security.keys.ring.jwks()
