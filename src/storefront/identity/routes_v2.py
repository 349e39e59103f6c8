"""API v2's entry point and the caller's account (HAL, decisions 0142 and 0206).

``GET /api/v2`` is where a client starts: links to sign in and register (v1's auth routes,
the one token-issuing surface of both versions), to the account, to the caller's shops and to
opening one. The account (``/users/me``) links what its owner may do now: the sessions, the
password, two-factor sign-in (enrol or remove, by its current state), the privacy operations
and opening a shop. Every rule is v1's service (``IdentityService``, ``SessionService``,
``MfaService``, ``SignInService``) behind v1's dependencies; v2 only shapes."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import Field

from storefront.identity.deps import (
    INVALID,
    Client,
    CurrentPair,
    CurrentPrincipal,
    CurrentUserRow,
    OptionalPrincipal,
)
from storefront.identity.mfa import MfaService
from storefront.identity.models import User
from storefront.identity.schemas import CodeIn, PasswordChangeIn, UserPatch
from storefront.identity.service import IdentityService, SignInService, require_recent_auth
from storefront.identity.sessions import SessionService
from storefront.kit.errors import Unauthenticated
from storefront.web.deps import ReadSessionDep, ResourcesDep, SessionDep
from storefront.web.hal import (
    ADMIN_AUDIT,
    CONSENTS,
    CURIES,
    ERASE,
    EXPORTS,
    LOGIN,
    LOGOUT,
    ME,
    MFA_CONFIRM,
    MFA_ENROL,
    MFA_REMOVE,
    MY_SHOPS,
    OPEN_SHOP,
    PASSWORD_CHANGE,
    REFRESH,
    REGISTER,
    REVOKE,
    SESSIONS,
    Accepted,
    HalOut,
    HALResponse,
    Resource,
    hal_response,
    ident,
    link,
    problems,
    resource,
    timestamp,
    v2,
)
from storefront.web.paths import API_PREFIX
from storefront.web.responses import PERSONAL
from storefront.web.route_policy import route_policy

router = APIRouter(tags=["account (v2)"])
# the entry point's path is the prefix itself: included by the app with the prefix
root_router = APIRouter(tags=["account (v2)"])
ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def _auth(path: str) -> str:
    return API_PREFIX + path


class RootV2(HalOut):
    pass


class UserV2(HalOut):
    id: str
    email: str
    display_name: str
    mfa_enabled: bool
    created_at: str = Field(description="RFC 3339, UTC")


class SessionV2(HalOut):
    id: str
    created_at: str
    last_used_at: str
    user_agent: str | None
    ip_address: str | None
    current: bool


class SessionListV2(HalOut):
    count: int
    embedded: dict[str, list[SessionV2]] = Field(alias="_embedded")


class TotpEnrolmentV2(HalOut):
    secret: str
    otpauth_uri: str


class RecoveryCodesV2(HalOut):
    recovery_codes: list[str]


def root_resource(admin: bool) -> Resource:
    links: dict[str, Any] = {
        "self": link(v2("")),
        ME: link(v2("/users/me"), title="the signed-in caller"),
        MY_SHOPS: link(v2("/users/me/shops")),
        OPEN_SHOP: link(v2("/shops"), title="open a shop (POST)"),
        REGISTER: link(_auth("/auth/register"), title="register (POST; v1's auth surface)"),
        LOGIN: link(_auth("/auth/login"), title="sign in (POST): a token pair"),
        REFRESH: link(_auth("/auth/refresh"), title="a new token pair (POST)"),
    }
    if admin:
        links[ADMIN_AUDIT] = link(v2("/admin/audit-events"))
    return resource(links, {})


def user_resource(user: User, email: str, display_name: str, mfa: bool) -> Resource:
    me = "/users/me"
    links: dict[str, Any] = {
        "self": link(v2(me)),
        "edit": link(v2(me), title="change the display name (PATCH)"),
        MY_SHOPS: link(v2(f"{me}/shops")),
        OPEN_SHOP: link(v2("/shops"), title="open a shop (POST)"),
        SESSIONS: link(v2("/auth/sessions")),
        PASSWORD_CHANGE: link(v2("/auth/password"), title="change the password (POST)"),
        EXPORTS: link(v2(f"{me}/exports"), title="request a data export (POST)"),
        CONSENTS: link(v2(f"{me}/consents"), title="read (GET), change (PUT)"),
        ERASE: link(v2(me), title="erase the account (DELETE)"),
        LOGOUT: link(_auth("/auth/logout"), title="sign out (POST)"),
    }
    if mfa:
        links[MFA_REMOVE] = link(v2("/auth/mfa/totp"), title="turn TOTP off (DELETE, a code)")
    else:
        links[MFA_ENROL] = link(v2("/auth/mfa/totp"), title="start TOTP enrolment (POST)")
    return resource(
        links,
        {
            "id": ident(user.id),
            "email": email,
            "display_name": display_name,
            "mfa_enabled": mfa,
            "created_at": timestamp(user.created_at),
        },
    )


def _session_resource(row: Any, current: bool) -> Resource:
    return resource(
        {REVOKE: link(v2(f"/auth/sessions/{row.id}"), title="revoke (DELETE)")},
        {
            "id": ident(row.id),
            "created_at": timestamp(row.created_at),
            "last_used_at": timestamp(row.last_used_at),
            "user_agent": row.user_agent,
            "ip_address": row.ip_address,
            "current": current,
        },
    )


async def _user_document(identity: IdentityService, user: User, mfa: MfaService) -> Resource:
    profile = await identity.profile(user)
    if profile is None:  # erased: cannot be signed in, but never show a sealed value
        raise Unauthenticated("This account was erased.", error="invalid_token")
    return user_resource(user, profile.email, profile.display_name, await mfa.enabled(user.id))


ME_LINKS = {
    "self": {"href": "/api/v2/users/me"},
    "edit": {"href": "/api/v2/users/me", "title": "change the display name (PATCH)"},
    "sf:my-shops": {"href": "/api/v2/users/me/shops"},
    "sf:open-shop": {"href": "/api/v2/shops", "title": "open a shop (POST)"},
    "sf:sessions": {"href": "/api/v2/auth/sessions"},
    "sf:password": {"href": "/api/v2/auth/password", "title": "change the password (POST)"},
    "sf:exports": {"href": "/api/v2/users/me/exports", "title": "request a data export (POST)"},
    "sf:consents": {"href": "/api/v2/users/me/consents", "title": "read (GET), change (PUT)"},
    "sf:erase": {"href": "/api/v2/users/me", "title": "erase the account (DELETE)"},
    "sf:logout": {"href": "/api/v1/auth/logout", "title": "sign out (POST)"},
    "sf:mfa-enrol": {"href": "/api/v2/auth/mfa/totp", "title": "start TOTP enrolment (POST)"},
    "curies": CURIES,
}
ME_EXAMPLE = {
    "_links": ME_LINKS,
    "id": ID,
    "email": "ada@example.com",
    "display_name": "Ada",
    "mfa_enabled": False,
    "created_at": "2026-12-07T05:15:05.123456Z",
}


@root_router.get(
    "",
    response_model=RootV2,
    response_class=HALResponse,
    responses=problems(
        401,
        example={
            "_links": {
                "self": {"href": "/api/v2"},
                "sf:me": {"href": "/api/v2/users/me", "title": "the signed-in caller"},
                "sf:my-shops": {"href": "/api/v2/users/me/shops"},
                "sf:open-shop": {"href": "/api/v2/shops", "title": "open a shop (POST)"},
                "sf:register": {"href": "/api/v1/auth/register"},
                "sf:login": {"href": "/api/v1/auth/login"},
                "sf:refresh": {"href": "/api/v1/auth/refresh"},
                "curies": CURIES,
            }
        },
    ),
    summary="The entry point: links to sign in, the account, the caller's shops, a new shop",
)
async def api_root(principal: OptionalPrincipal, media_type: Accepted) -> HALResponse:
    admin = principal is not None and principal.is_admin
    # an administrator's copy has one more link: the anonymous copy varies by the token too
    headers = PERSONAL if principal is not None else {}
    return hal_response(
        root_resource(admin), media_type, headers={**headers, "Vary": "Accept, Authorization"}
    )


@router.get(
    "/users/me",
    response_model=UserV2,
    response_class=HALResponse,
    responses=problems(401, example=ME_EXAMPLE),
    summary="The caller's account, with links to everything they may do with it",
)
async def me(
    principal: CurrentPrincipal,
    session: ReadSessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    identity = IdentityService(session, resources.passwords, resources.vault)
    user = await identity.get_active(principal.user_id)
    if user is None:
        raise Unauthenticated(INVALID, error="invalid_token")
    document = await _user_document(identity, user, MfaService(session, resources))
    return hal_response(document, media_type, headers=PERSONAL)


@router.patch(
    "/users/me",
    response_model=UserV2,
    response_class=HALResponse,
    responses=problems(401, example=ME_EXAMPLE),
    summary="Change the caller's display name (the target of `edit`)",
)
async def update_me(
    body: UserPatch,
    user: CurrentUserRow,
    session: SessionDep,
    resources: ResourcesDep,
    media_type: Accepted,
) -> HALResponse:
    identity = IdentityService(session, resources.passwords, resources.vault)
    updated = await identity.update_profile(user, display_name=body.display_name)
    document = await _user_document(identity, updated, MfaService(session, resources))
    return hal_response(document, media_type, headers=PERSONAL)


@router.get(
    "/auth/sessions",
    response_model=SessionListV2,
    response_class=HALResponse,
    responses=problems(
        401,
        example={
            "_links": {
                "self": {"href": "/api/v2/auth/sessions"},
                "sf:me": {"href": "/api/v2/users/me"},
                "curies": CURIES,
            },
            "count": 1,
            "_embedded": {
                "sessions": [
                    {
                        "_links": {"sf:revoke": {"href": f"/api/v2/auth/sessions/{ID}"}},
                        "id": ID,
                        "created_at": "2026-12-07T05:15:05.123456Z",
                        "last_used_at": "2026-12-07T06:00:00.000000Z",
                        "user_agent": "curl/8.5.0",
                        "ip_address": "203.0.113.7",
                        "current": True,
                    }
                ]
            },
        },
    ),
    summary="The caller's live sign-in sessions; each links its revocation",
)
async def list_sessions(
    pair: CurrentPair, session: SessionDep, resources: ResourcesDep, media_type: Accepted
) -> HALResponse:
    user, principal = pair
    rows = await SessionService(session, resources).list_live(user.id)
    items = [_session_resource(s, str(s.id) == principal.session_id) for s in rows]
    body = resource(
        {"self": link(v2("/auth/sessions")), ME: link(v2("/users/me"))},
        {"count": len(items)},
        {"sessions": items},
    )
    return hal_response(body, media_type, headers=PERSONAL)


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404),
    summary="Revoke one of the caller's sessions (the target of `sf:revoke`)",
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
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=PERSONAL)


@router.post(
    "/auth/mfa/totp",
    status_code=status.HTTP_201_CREATED,
    response_model=TotpEnrolmentV2,
    response_class=HALResponse,
    responses=problems(
        401,
        409,
        ok=201,
        example={
            "_links": {
                "sf:mfa-confirm": {"href": "/api/v2/auth/mfa/totp/confirm"},
                "sf:me": {"href": "/api/v2/users/me"},
                "curies": CURIES,
            },
            "secret": "JBSWY3DPEHPK3PXP",
            "otpauth_uri": "otpauth://totp/Storefront:ada%40example.com?secret=JBSWY3DPEHPK3PXP",
        },
    ),
    summary="Start TOTP enrolment (recent sign-in): a secret, and the link to confirm it",
)
async def totp_enrol(
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    media_type: Accepted,
) -> HALResponse:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    enrolment = await MfaService(session, resources).start_enrolment(user, client)
    body = resource(
        {
            MFA_CONFIRM: link(v2("/auth/mfa/totp/confirm"), title="confirm with a code (POST)"),
            ME: link(v2("/users/me")),
        },
        {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri},
    )
    return hal_response(body, media_type, status_code=status.HTTP_201_CREATED, headers=PERSONAL)


@router.post(
    "/auth/mfa/totp/confirm",
    response_model=RecoveryCodesV2,
    response_class=HALResponse,
    responses=problems(
        401,
        404,
        409,
        example={
            "_links": {"sf:me": {"href": "/api/v2/users/me"}, "curies": CURIES},
            "recovery_codes": ["k7qm-2xfp", "9cwd-h3tn"],
        },
    ),
    summary="Confirm TOTP with a code (recent sign-in); ten one-time recovery codes",
)
async def totp_confirm(
    body: CodeIn,
    pair: CurrentPair,
    session: SessionDep,
    resources: ResourcesDep,
    client: Client,
    media_type: Accepted,
) -> HALResponse:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    codes = await MfaService(session, resources).confirm_enrolment(user, body.code, client)
    document = resource({ME: link(v2("/users/me"))}, {"recovery_codes": codes})
    return hal_response(document, media_type, headers=PERSONAL)


@router.delete(
    "/auth/mfa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 404),
    summary="Turn TOTP off (recent sign-in; a current code or a recovery code in the body)",
)
async def totp_remove(
    body: CodeIn, pair: CurrentPair, session: SessionDep, resources: ResourcesDep, client: Client
) -> Response:
    user, principal = pair
    require_recent_auth(resources, principal.auth_time)
    await MfaService(session, resources).turn_off(user.id, body.code, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=PERSONAL)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403),
    summary="Change the password (recent sign-in); the caller's other sessions are revoked",
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
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=PERSONAL)
