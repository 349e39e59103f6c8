"""Identity rules: registration, sign-in (throttled, with the MFA step), password changes."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import SecurityEvent, record
from storefront.auth.passwords import PasswordHasher
from storefront.auth.tokens import MFA, InvalidToken
from storefront.identity import metrics
from storefront.identity.mfa import BAD_CODE, MfaService
from storefront.identity.models import User
from storefront.identity.password_policy import check_password, normalize_password
from storefront.identity.profile import Profile, display_name_aad, email_aad, open_profile
from storefront.identity.repository import UserRepository
from storefront.identity.sessions import ClientInfo, IssuedTokens, SessionService, emit
from storefront.kit.db import new_id, utcnow
from storefront.kit.emails import normalize_email
from storefront.kit.errors import (
    Conflict,
    Forbidden,
    RecentAuthRequired,
    SecurityBackendUnavailable,
    SignInThrottled,
    Unauthenticated,
)
from storefront.resources import Resources
from storefront.vault import PersonalDataVault

BAD_CREDENTIALS = "Incorrect email or password."


async def user_exists(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return await UserRepository(session).exists(user_id)


async def contact_of(
    session: AsyncSession, user_id: uuid.UUID, *, vault: PersonalDataVault
) -> tuple[str, str] | None:
    """(email, display name) of an active user, for other domains' notifications; None for
    an unknown, inactive or erased user."""
    user = await UserRepository(session).get_active(user_id, vault=vault)
    if user is None:
        return None
    profile = await open_profile(session, vault, user)
    return None if profile is None else (profile.email, profile.display_name)


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    mfa_token: str


def require_recent_auth(resources: Resources, auth_time: datetime) -> None:
    window = resources.security.auth.recent_auth_seconds
    if utcnow() - auth_time > timedelta(seconds=window):
        raise RecentAuthRequired(
            f"This change needs a sign-in within the last {window // 60} minutes; "
            "sign in again and retry.",
            max_age_seconds=window,
        )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def account_key(email: str) -> str:
    """The key of an account in throttles and device cookies: a digest of the normalised
    email (known and unknown addresses alike), so Redis never holds the address itself."""
    return _digest(normalize_email(email))


_account_key = account_key  # the name other modules import


def password_change_key(user_id: uuid.UUID) -> str:
    """The throttle key (``pair_throttle``) of wrong current passwords at a change."""
    return f"password-change:{user_id}"


class IdentityService:
    def __init__(
        self,
        session: AsyncSession,
        passwords: PasswordHasher,
        vault: PersonalDataVault,
    ) -> None:
        """``vault``: the process's (``resources.vault``)."""
        self.session = session
        self.users = UserRepository(session)
        self.passwords = passwords
        self.vault = vault

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

    async def sign_up(self, *, email: str, password: str, display_name: str) -> User:
        """Self-service registration: :meth:`register`, recorded in the audit log as the new
        user's own act (accounts made by an operator or the seed are not sign-ups)."""
        user = await self.register(email=email, password=password, display_name=display_name)
        record(
            self.session, "user.registered", object_type="user", object_id=user.id, actor_id=user.id
        )
        return user

    async def authenticate(
        self, *, email: str, password: str, release_connection: bool = False
    ) -> User:
        """Same answer and comparable time whether or not the account exists.

        ``release_connection``: end the transaction after the account is read, so its pooled
        connection serves other requests while the password is hashed (up to hundreds of
        milliseconds, or a wait for a hashing thread); statements after it begin a new one.
        Only for a caller whose session has nothing to commit yet (a sign-in)."""
        password = normalize_password(password)
        user = await self.by_email(email)
        if release_connection:
            await self.session.commit()
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

    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources
        self.kit = resources.security
        self.identity = IdentityService(session, resources.passwords, resources.vault)
        self.sessions = SessionService(session, resources)
        self.mfa = MfaService(session, resources)
        self.device_cookie: str | None = None  # set by a correct password (login)

    async def _event(self, name: str, client: ClientInfo, **fields: str | None) -> None:
        outcome = fields.pop("outcome", None) or "success"
        await emit(
            self.resources,
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
        """Throttled password sign-in (decision 0100).

        Failures are counted per account and address, per address, and per account over
        every unknown device; a known device (a valid device cookie for this account) is
        counted on its own and passes the account-wide lock, so guessing from elsewhere
        cannot lock its owner out. A correct password sets ``device_cookie`` (a fresh one).
        """
        kit = self.kit
        account = account_key(email)
        device = kit.devices.device_of(account, client.device_cookie)
        pair = _digest(f"{account}|{client.address}")
        try:
            if device is not None:
                wait = await kit.device_throttle.retry_after(device)
            else:
                wait = max(
                    await kit.pair_throttle.retry_after(pair),
                    await kit.account_throttle.retry_after(account),
                    await kit.address_throttle.retry_after(client.address),
                )
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again soon.") from exc
        if wait > 0:
            await self._event(
                "login.throttled",
                client,
                outcome="denied",
                reason="known_device" if device else "unknown_device",
            )
            raise SignInThrottled(
                "Too many failed sign-in attempts; wait before trying again.", retry_after=wait
            )
        try:
            # the request's session has only read so far: its connection is not held
            # through the hash (decision 0134)
            user = await self.identity.authenticate(
                email=email, password=password, release_connection=True
            )
        except Unauthenticated:
            try:
                if device is not None:
                    await kit.device_throttle.failure(device)
                else:
                    await kit.pair_throttle.failure(pair)
                    await kit.account_throttle.failure(account)
                await kit.address_throttle.failure(client.address)
            except RedisError as exc:
                raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
            await self._event("login.failed", client, outcome="failure", reason="bad_credentials")
            raise
        try:
            # the account-wide count for unknown devices is left to expire: a success here
            # must not hand an attacker guessing from elsewhere a fresh budget
            await kit.pair_throttle.reset(pair)
            if device is not None:
                await kit.device_throttle.reset(device)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Sign-in is unavailable; try again.") from exc
        self.device_cookie = kit.devices.issue(account)
        if await self.mfa.enabled(user.id):
            await self.kit.keys.ensure_loaded()
            token = self.resources.tokens.issue(
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
            claims = self.resources.tokens.verify(mfa_token, expected_type=MFA)
            user_id = uuid.UUID(claims.subject)
        except (InvalidToken, ValueError) as exc:
            await self._event("login.mfa_failed", client, outcome="failure", reason="bad_token")
            raise Unauthenticated(
                "The MFA token is invalid or expired; sign in again.", error="invalid_token"
            ) from exc
        key = str(user_id)
        user = await self.identity.get_active(user_id)

        async def check() -> str | None:
            return None if user is None else await self.mfa.verify(user_id, code)

        try:
            kind = await self.mfa.throttled(user_id, check)
        except SignInThrottled:
            await self._event("login.mfa_throttled", client, user_id=key, outcome="denied")
            raise
        if user is None or kind is None:
            await self._event(
                "login.mfa_failed", client, user_id=key, outcome="failure", reason="bad_code"
            )
            metrics.record_signin_failed("bad_mfa_code")
            raise Unauthenticated(BAD_CODE)
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
        require_recent_auth(self.resources, auth_time)
        # wrong current passwords are guesses like failed sign-ins: a session (stolen within
        # the recent-auth window) must not be a way to try passwords without a limit
        throttle, key = self.kit.pair_throttle, password_change_key(user.id)
        try:
            wait = await throttle.retry_after(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Password changes are unavailable; retry.") from exc
        if wait > 0:
            await self._event(
                "password.change_throttled", client, user_id=str(user.id), outcome="denied"
            )
            raise SignInThrottled(
                "Too many wrong current passwords; wait before trying again.", retry_after=wait
            )
        ok, _ = await self.resources.passwords.verify(
            normalize_password(current_password), user.password_hash
        )
        try:
            if ok:
                await throttle.reset(key)
            else:
                await throttle.failure(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Password changes are unavailable; retry.") from exc
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
        user.password_hash = await self.resources.passwords.hash(normalized)
        await self.session.flush()
        revoked = await self.sessions.revoke_others(user.id, session_id, "password_changed", client)
        await self._event(
            "password.changed",
            client,
            user_id=str(user.id),
            session_id=str(session_id) if session_id else None,
            reason=f"revoked_other_sessions:{revoked}",
        )
