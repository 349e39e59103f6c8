"""The caller's account in the GraphQL schema, through the services REST's routes call:
their profile (``updateViewer``), sessions (``viewer.sessions``, ``revokeSession``,
``signOut``), password change and TOTP two-factor sign-in. Registering, signing in and
refreshing tokens stay on REST (decision 0182): they hand out credentials, which GraphQL
never does; everything a signed-in caller does with their account is here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from storefront.auth.devices import COOKIE as DEVICE_COOKIE
from storefront.auth.principal import Principal
from storefront.identity.deps import INVALID
from storefront.identity.mfa import MfaService
from storefront.identity.models import User
from storefront.identity.schemas import CodeIn, PasswordChangeIn, UserPatch
from storefront.identity.service import IdentityService, SignInService, require_recent_auth
from storefront.identity.sessions import ClientInfo, SessionService
from storefront.kit.client_address import client_address
from storefront.kit.errors import Unauthenticated
from storefront.web.graphql import GraphQLContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def client_of(context: GraphQLContext) -> ClientInfo:
    """The caller's address, user agent and device cookie, as REST's ``Client`` reads them
    (for the security events an account change records)."""
    request = context.request
    if request is None:  # pragma: no cover - every operation comes over a connection
        return ClientInfo(address="unknown", user_agent=None, device_cookie=None)
    # REST's client_info, for a request or a WebSocket alike
    return ClientInfo(
        address=client_address(request.scope, context.resources.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
        device_cookie=request.cookies.get(DEVICE_COOKIE),
    )


async def current_user(context: GraphQLContext, session: AsyncSession) -> tuple[User, Principal]:
    """The caller and their user row in ``session`` (as REST's ``CurrentPair``); an account
    erased or deactivated since the token was issued is unauthenticated."""
    principal = context.require_principal()
    resources = context.resources
    identity = IdentityService(session, resources.passwords, resources.vault)
    user = await identity.get_active(principal.user_id)
    if user is None:
        raise Unauthenticated(INVALID)
    return user, Principal(user.id, user.is_admin, principal.auth_time, principal.session_id)


@strawberry.type(description="A signed-in session of the caller's (a refresh token family).")
class AuthSession:
    id: strawberry.ID = strawberry.field(description="The session's id (pass to revokeSession).")
    created_at: datetime = strawberry.field(description="When it was signed in.")
    last_used_at: datetime = strawberry.field(description="When its refresh token was last used.")
    user_agent: str | None = strawberry.field(
        description="The browser or client that signed in, as it said."
    )
    ip_address: str | None = strawberry.field(description="The address it signed in from.")
    current: bool = strawberry.field(description="The session this request's token belongs to.")


@strawberry.type(description="The caller's sessions (part of Viewer).")
class ViewerAccount:
    id: strawberry.ID = strawberry.field(description="The caller's user id.")

    @strawberry.field(
        description="The caller's live sessions (as GET /auth/sessions); revoke one with "
        "revokeSession."
    )
    async def sessions(self, info: strawberry.Info[GraphQLContext, None]) -> list[AuthSession]:
        context = info.context
        async with context.reading() as session:
            user, principal = await current_user(context, session)
            rows = await SessionService(session, context.resources).list_live(user.id)
            return [
                AuthSession(
                    id=strawberry.ID(str(s.id)),
                    created_at=s.created_at,
                    last_used_at=s.last_used_at,
                    user_agent=s.user_agent,
                    ip_address=s.ip_address,
                    current=str(s.id) == principal.session_id,
                )
                for s in rows
            ]


@strawberry.type(description="The caller's profile after a change.")
class Profile:
    id: strawberry.ID = strawberry.field(description="The caller's user id.")
    email: str = strawberry.field(description="Their email address.")
    display_name: str = strawberry.field(description="Their display name.")
    created_at: datetime = strawberry.field(description="When the account was made.")


@strawberry.type(description="TOTP enrolment started: add the secret to an authenticator app.")
class TotpEnrolment:
    secret: str = strawberry.field(description="The shared secret (base32).")
    otpauth_uri: str = strawberry.field(description="The same as an otpauth:// URI (QR code).")


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(
        description="Change the caller's profile; a field left out stays (as PATCH /users/me)."
    )
    async def update_viewer(
        self,
        info: strawberry.Info[GraphQLContext, None],
        display_name: Annotated[str | None, strawberry.argument(description="1..100 chars.")] = (
            strawberry.UNSET
        ),
    ) -> Profile:
        context = info.context
        context.require_principal()
        given = {} if display_name is strawberry.UNSET else {"display_name": display_name}
        body = UserPatch.model_validate(given)
        resources = context.resources
        async with context.writing() as session:
            user, _ = await current_user(context, session)
            identity = IdentityService(session, resources.passwords, resources.vault)
            updated = await identity.update_profile(user, display_name=body.display_name)
            profile = await identity.profile(updated)
            if profile is None:  # erased meanwhile: never show a sealed value
                raise Unauthenticated("This account was erased.")
            return Profile(
                id=strawberry.ID(str(updated.id)),
                email=profile.email,
                display_name=profile.display_name,
                created_at=updated.created_at,
            )

    @strawberry.mutation(
        description="End the session this request's token belongs to (as POST /auth/logout): "
        "its refresh token stops working and its access tokens are revoked. True."
    )
    async def sign_out(self, info: strawberry.Info[GraphQLContext, None]) -> bool:
        context = info.context
        async with context.writing() as session:
            user, principal = await current_user(context, session)
            if principal.session_id is not None:
                await SessionService(session, context.resources).revoke(
                    user.id, uuid.UUID(principal.session_id), "logout", client_of(context)
                )
        return True

    @strawberry.mutation(
        description="End one of the caller's sessions (as DELETE /auth/sessions/{id}); "
        "someone else's: not-found. True."
    )
    async def revoke_session(
        self, info: strawberry.Info[GraphQLContext, None], id: uuid.UUID
    ) -> bool:
        context = info.context
        async with context.writing() as session:
            user, _ = await current_user(context, session)
            await SessionService(session, context.resources).revoke(
                user.id, id, "revoked_by_user", client_of(context)
            )
        return True

    @strawberry.mutation(
        description="Change the password (needs a recent sign-in; as POST /auth/password, "
        "from the same `auth` rate-limit budget and failure throttle); the caller's other "
        "sessions are revoked. True."
    )
    async def change_password(
        self,
        info: strawberry.Info[GraphQLContext, None],
        current_password: str,
        new_password: str,
    ) -> bool:
        context = info.context
        await context.spend("auth")  # first, as REST's middleware spends it
        context.require_principal()
        body = PasswordChangeIn(current_password=current_password, new_password=new_password)
        async with context.writing() as session:
            user, principal = await current_user(context, session)
            await SignInService(session, context.resources).change_password(
                user,
                auth_time=principal.auth_time,
                session_id=uuid.UUID(principal.session_id) if principal.session_id else None,
                current_password=body.current_password,
                new_password=body.new_password,
                client=client_of(context),
            )
        return True

    @strawberry.mutation(
        description="Start TOTP enrolment (needs a recent sign-in; as POST /auth/mfa/totp); "
        "confirm it with confirmTotp."
    )
    async def start_totp_enrolment(
        self, info: strawberry.Info[GraphQLContext, None]
    ) -> TotpEnrolment:
        context = info.context
        async with context.writing() as session:
            user, principal = await current_user(context, session)
            require_recent_auth(context.resources, principal.auth_time)
            enrolment = await MfaService(session, context.resources).start_enrolment(
                user, client_of(context)
            )
        return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)

    @strawberry.mutation(
        description="Turn TOTP on with a first code (needs a recent sign-in; as POST "
        "/auth/mfa/totp/confirm): ten one-time recovery codes, shown this once."
    )
    async def confirm_totp(
        self, info: strawberry.Info[GraphQLContext, None], code: str
    ) -> list[str]:
        context = info.context
        body = CodeIn(code=code)
        async with context.writing() as session:
            user, principal = await current_user(context, session)
            require_recent_auth(context.resources, principal.auth_time)
            return await MfaService(session, context.resources).confirm_enrolment(
                user, body.code, client_of(context)
            )

    @strawberry.mutation(
        description="Turn TOTP off with a current code or a recovery code (needs a recent "
        "sign-in; as DELETE /auth/mfa/totp). True."
    )
    async def disable_totp(self, info: strawberry.Info[GraphQLContext, None], code: str) -> bool:
        context = info.context
        body = CodeIn(code=code)
        async with context.writing() as session:
            user, principal = await current_user(context, session)
            require_recent_auth(context.resources, principal.auth_time)
            await MfaService(session, context.resources).turn_off(
                user.id, body.code, client_of(context)
            )
        return True
