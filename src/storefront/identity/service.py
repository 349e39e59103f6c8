"""Identity rules: registration, sign-in (throttled, with the MFA step), password changes."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.mfa import MfaService
from storefront.identity.models import User
from storefront.identity.password_policy import check_password, normalize_password
from storefront.identity.profile import Profile, display_name_aad, email_aad, open_profile
from storefront.identity.repository import UserRepository
from storefront.identity.sessions import ClientInfo, IssuedTokens, SessionService, emit
from storefront.platform.audit import SecurityEvent
from storefront.platform.crypto import PersonalDataVault, vault_of
from storefront.platform.db import new_id, utcnow
from storefront.platform.errors import (
    Conflict,
    Forbidden,
    RecentAuthRequired,
    SecurityBackendUnavailable,
    SignInThrottled,
    Unauthenticated,
)
from storefront.platform.observability import metrics
from storefront.platform.runtime import Runtime
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.tokens import MFA, InvalidToken

BAD_CREDENTIALS = "Incorrect email or password."
BAD_CODE = "The code is not valid (or was already used)."


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def user_exists(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return await UserRepository(session).exists(user_id)


async def contact_of(
    session: AsyncSession, user_id: uuid.UUID, *, vault: PersonalDataVault | None = None
) -> tuple[str, str] | None:
    """(email, display name) of an active user, for other domains' notifications; None for
    an unknown, inactive or erased user."""
    vault = vault or vault_of(session)
    user = await UserRepository(session).get_active(user_id, vault=vault)
    if user is None:
        return None
    profile = await open_profile(session, vault, user)
    return None if profile is None else (profile.email, profile.display_name)


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    mfa_token: str


def require_recent_auth(runtime: Runtime, auth_time: datetime) -> None:
    window = runtime.security.auth.recent_auth_seconds
    if utcnow() - auth_time > timedelta(seconds=window):
        raise RecentAuthRequired(
            f"This change needs a sign-in within the last {window // 60} minutes; "
            "sign in again and retry.",
            max_age_seconds=window,
        )


def _account_key(email: str) -> str:
    # counters are keyed by a digest, so Redis never holds the address itself
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


class IdentityService:
    def __init__(
        self,
        session: AsyncSession,
        passwords: PasswordHasher,
        vault: PersonalDataVault | None = None,
    ) -> None:
        """``vault``: the runtime's; by default the one the session's sessionmaker carries."""
        self.session = session
        self.users = UserRepository(session)
        self.passwords = passwords
        self.vault = vault or vault_of(session)

    async def by_email(self, email: str) -> User | None:
        """Through the email's blind index: the address itself is stored only sealed."""
        return await self.users.by_email_index(self.vault.blind_index(normalize_email(email)))

    async def profile(self, user: User) -> Profile | None:
        return await open_profile(self.session, self.vault, user)

    async def register(self, *, email: str, password: str, display_name: str) -> User:
        email = normalize_email(email)
        password = check_password(password, email=email)
        if await self.by_email(email) is not None:
            raise Conflict("An account with this email already exists.")
        user_id = new_id()
        user = User(
            id=user_id,
            email_index=self.vault.blind_index(email),
            email_sealed=await self.vault.seal_for(
                self.session, user_id, email, aad=email_aad(user_id)
            ),
            display_name_sealed=await self.vault.seal_for(
                self.session, user_id, display_name, aad=display_name_aad(user_id)
            ),
            password_hash=await self.passwords.hash(password),
        )
        try:
            async with self.session.begin_nested():
                await self.users.add(user)
        except IntegrityError as exc:  # lost a race with a concurrent registration
            raise Conflict("An account with this email already exists.") from exc
        metrics.record_signup()
        return user

    async def authenticate(self, *, email: str, password: str) -> User:
        """Same answer and comparable time whether or not the account exists."""
        password = normalize_password(password)
        user = await self.by_email(email)
        if user is None or not user.is_active:
            await self.passwords.verify_dummy(password)
            metrics.record_signin_failed("bad_credentials")
            raise Unauthenticated(BAD_CREDENTIALS)
        ok, new_hash = await self.passwords.verify(password, user.password_hash)
        if not ok:
            metrics.record_signin_failed("bad_credentials")
            raise Unauthenticated(BAD_CREDENTIALS)
        if new_hash is not None:  # parameters were raised since this hash was made
            user.password_hash = new_hash
        return user

    async def get_active(self, user_id: uuid.UUID) -> User | None:
        """The user, with their data key cached on the session (no query to open it later)."""
        return await self.users.get_active(user_id, vault=self.vault)

    async def update_profile(self, user: User, *, display_name: str | None) -> User:
        if display_name is not None:
            user.display_name_sealed = await self.vault.seal_for(
                self.session, user.id, display_name, aad=display_name_aad(user.id)
            )
        await self.session.flush()
        return user


class SignInService:
    """Sign-in, the MFA step and password changes, with throttling and security events."""

    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.kit = runtime.security
        self.identity = IdentityService(session, runtime.passwords, runtime.vault)
        self.sessions = SessionService(session, runtime)
        self.mfa = MfaService(session, runtime)

    async def _event(self, name: str, client: ClientInfo, **fields: str | None) -> None:
        outcome = fields.pop("outcome", None) or "success"
        await emit(
            self.runtime,
            SecurityEvent(
                name,
                outcome=outcome,
                client_address=client.address,
                user_agent=client.user_agent,
                **fields,  # type: ignore[arg-type]
            ),
            session=self.session,
        )

    async def login(
        self, email: str, password: str, client: ClientInfo
    ) -> IssuedTokens | MfaChallenge:
        account = _account_key(email)
        try:
            wait = max(
                await self.kit.account_throttle.retry_after(account),
                await self.kit.address_throttle.retry_after(client.address),
            )
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again soon.") from exc
        if wait > 0:
            await self._event("login.throttled", client, outcome="denied")
            raise SignInThrottled(
                "Too many failed sign-in attempts; wait before trying again.", retry_after=wait
            )
        try:
            user = await self.identity.authenticate(email=email, password=password)
        except Unauthenticated:
            try:
                await self.kit.account_throttle.failure(account)
                await self.kit.address_throttle.failure(client.address)
            except RedisError as exc:
                raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
            await self._event("login.failed", client, outcome="failure", reason="bad_credentials")
            raise
        try:
            await self.kit.account_throttle.reset(account)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
        if await self.mfa.enabled(user.id):
            await self.kit.keys.ensure_loaded()
            token = self.runtime.tokens.issue(
                str(user.id), token_type=MFA, ttl_seconds=self.kit.auth.mfa_token_ttl_seconds
            )
            await self._event("login.mfa_required", client, user_id=str(user.id))
            return MfaChallenge(token)
        issued = await self.sessions.start(user, client)
        await self._event(
            "login.succeeded", client, user_id=str(user.id), session_id=str(issued.session_id)
        )
        return issued

    async def verify_mfa(self, mfa_token: str, code: str, client: ClientInfo) -> IssuedTokens:
        await self.kit.keys.ensure_loaded()
        try:
            claims = self.runtime.tokens.verify(mfa_token, expected_type=MFA)
            user_id = uuid.UUID(claims.subject)
        except (InvalidToken, ValueError) as exc:
            await self._event("login.mfa_failed", client, outcome="failure", reason="bad_token")
            raise Unauthenticated(
                "The MFA token is invalid or expired; sign in again.", error="invalid_token"
            ) from exc
        key = str(user_id)
        try:
            wait = await self.kit.mfa_throttle.retry_after(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again soon.") from exc
        if wait > 0:
            await self._event("login.mfa_throttled", client, user_id=key, outcome="denied")
            raise SignInThrottled(
                "Too many wrong codes; wait before trying again.", retry_after=wait
            )
        user = await self.identity.get_active(user_id)
        kind = await self.mfa.verify(user_id, code) if user is not None else None
        if user is None or kind is None:
            try:
                await self.kit.mfa_throttle.failure(key)
            except RedisError as exc:
                raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
            await self._event(
                "login.mfa_failed", client, user_id=key, outcome="failure", reason="bad_code"
            )
            metrics.record_signin_failed("bad_mfa_code")
            raise Unauthenticated(BAD_CODE)
        try:
            await self.kit.mfa_throttle.reset(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
        issued = await self.sessions.start(user, client)
        await self._event(
            "login.succeeded",
            client,
            user_id=key,
            session_id=str(issued.session_id),
            reason=f"mfa:{kind}",
        )
        return issued

    async def change_password(
        self,
        user: User,
        *,
        auth_time: datetime,
        session_id: uuid.UUID | None,
        current_password: str,
        new_password: str,
        client: ClientInfo,
    ) -> None:
        require_recent_auth(self.runtime, auth_time)
        ok, _ = await self.runtime.passwords.verify(
            normalize_password(current_password), user.password_hash
        )
        if not ok:
            await self._event(
                "password.change_failed",
                client,
                user_id=str(user.id),
                outcome="failure",
                reason="wrong_current_password",
            )
            raise Forbidden("The current password is not correct.")
        profile = await self.identity.profile(user)
        normalized = check_password(new_password, email=profile.email if profile else None)
        user.password_hash = await self.runtime.passwords.hash(normalized)
        await self.session.flush()
        revoked = await self.sessions.revoke_others(user.id, session_id, "password_changed", client)
        await self._event(
            "password.changed",
            client,
            user_id=str(user.id),
            session_id=str(session_id) if session_id else None,
            reason=f"revoked_other_sessions:{revoked}",
        )
