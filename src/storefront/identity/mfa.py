"""TOTP multi-factor (RFC 6238, pyotp) and one-time recovery codes.

A code is accepted for the current 30-second step and one step either side, and only once:
accepting it moves ``last_used_step`` forward with a compare-and-set, so two requests racing
with the same code cannot both succeed. Seeds are sealed at rest; recovery codes are stored
as keyed hashes and each works once.

Every place that checks a second factor (sign-in's ``/auth/mfa/verify``, confirming an
enrolment, turning TOTP off) goes through :meth:`MfaService.throttled`: one per-account
failure budget with a growing back-off, so guesses spread over several endpoints add up.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pyotp
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import SecurityEvent
from storefront.identity.models import TotpFactor, User
from storefront.identity.profile import open_profile
from storefront.identity.repository import MfaRepository
from storefront.identity.sessions import ClientInfo, emit
from storefront.kit.db import utcnow
from storefront.kit.errors import (
    Conflict,
    NotFound,
    SecurityBackendUnavailable,
    SignInThrottled,
    Unauthenticated,
)
from storefront.resources import Resources

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)
TOO_MANY_CODES = "Too many wrong codes; wait before trying again."
BAD_CODE = "The code is not valid (or was already used)."

_T = TypeVar("_T")

# what a TOTP code is checked against (seconds since the epoch); tests set it to a moment
# of their choosing instead of waiting for a fresh 30-second step
totp_clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


def matching_step(totp: pyotp.TOTP, code: str, at: float, window: int = 1) -> int | None:
    """The time step (current +-window) whose code equals ``code``, compared in constant time."""
    step = int(at) // STEP_SECONDS
    found: int | None = None
    for candidate in range(step - window, step + window + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            found = candidate
    return found


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_recovery_code(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


class MfaService:
    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources
        self.repo = MfaRepository(session)
        self.box = resources.security.totp_box

    def _totp(self, factor: TotpFactor) -> pyotp.TOTP:
        return pyotp.TOTP(self.box.open(factor.secret_sealed).decode(), digits=DIGITS)

    def _code_hash(self, user_id: uuid.UUID, code: str) -> str:
        return self.box.mac(f"{user_id}:{normalize_recovery_code(code)}".encode())

    async def throttled(
        self, user_id: uuid.UUID, check: Callable[[], Awaitable[_T | None]]
    ) -> _T | None:
        """Run one second-factor check under the account's shared MFA throttle.

        Refuses with SignInThrottled (429, Retry-After) while the account is locked, counts
        a failed check (``check`` returned None or a false value), resets the count on
        success. Redis down: SecurityBackendUnavailable (fail closed).
        """
        throttle = self.resources.security.mfa_throttle
        key = str(user_id)
        try:
            wait = await throttle.retry_after(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Code checks are unavailable; try again.") from exc
        if wait > 0:
            raise SignInThrottled(TOO_MANY_CODES, retry_after=wait)
        result = await check()
        try:
            if result:
                await throttle.reset(key)
            else:
                await throttle.failure(key)
        except RedisError as exc:
            raise SecurityBackendUnavailable("Code checks are unavailable; try again.") from exc
        return result

    async def enabled(self, user_id: uuid.UUID) -> bool:
        return await self.repo.has_confirmed_totp(user_id)

    async def enrol(self, user: User) -> Enrolment:
        existing = await self.repo.totp(user.id)
        if existing is not None and existing.confirmed_at is not None:
            raise Conflict("Two-factor sign-in is already on; remove it before enrolling again.")
        secret = pyotp.random_base32()
        await self.repo.put_totp(
            TotpFactor(user_id=user.id, secret_sealed=self.box.seal(secret.encode()))
        )
        profile = await open_profile(self.session, self.resources.vault, user)
        uri = pyotp.TOTP(secret, digits=DIGITS).provisioning_uri(
            name=profile.email if profile else str(user.id),
            issuer_name=self.resources.security.auth.totp_issuer,
        )
        return Enrolment(secret=secret, otpauth_uri=uri)

    async def _check_totp(self, factor: TotpFactor, code: str) -> bool:
        code = code.strip()
        if len(code) != DIGITS or not code.isdigit():
            return False
        step = matching_step(self._totp(factor), code, totp_clock())
        return step is not None and await self.repo.claim_step(factor.user_id, step)

    async def confirm(self, user: User, code: str) -> list[str]:
        factor = await self.repo.totp(user.id)
        if factor is None:
            raise NotFound("Start the enrolment first (POST /auth/mfa/totp).")
        if factor.confirmed_at is not None:
            raise Conflict("Two-factor sign-in is already on.")
        if not await self.throttled(user.id, lambda: self._check_totp(factor, code)):
            return []
        factor.confirmed_at = utcnow()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await self.repo.replace_recovery_codes(
            user.id, [self._code_hash(user.id, c) for c in codes]
        )
        return codes

    async def verify_throttled(self, user_id: uuid.UUID, code: str) -> str | None:
        """:meth:`verify` under the shared second-factor throttle (every caller uses this)."""
        return await self.throttled(user_id, lambda: self.verify(user_id, code))

    async def verify(self, user_id: uuid.UUID, code: str) -> str | None:
        """Check a TOTP or recovery code; returns the kind that matched, or None.

        Unthrottled: callers go through :meth:`verify_throttled`."""
        factor = await self.repo.totp(user_id)
        if factor is None or factor.confirmed_at is None:
            return None
        if await self._check_totp(factor, code):
            return "totp"
        if len(normalize_recovery_code(code)) == 10 and await self.repo.use_recovery_code(
            user_id, self._code_hash(user_id, code), utcnow()
        ):
            return "recovery_code"
        return None

    async def remove(self, user_id: uuid.UUID) -> None:
        await self.repo.remove_all(user_id)

    # --- the account holder's own changes, each reported as a security event -------------

    async def _event(
        self, name: str, user_id: uuid.UUID, client: ClientInfo, outcome: str = "success"
    ) -> None:
        event = SecurityEvent(
            name,
            outcome=outcome,
            user_id=str(user_id),
            client_address=client.address,
            user_agent=client.user_agent,
        )
        await emit(self.resources, event, session=self.session)

    async def start_enrolment(self, user: User, client: ClientInfo) -> Enrolment:
        enrolment = await self.enrol(user)
        await self._event("mfa.totp.enrolment_started", user.id, client)
        return enrolment

    async def confirm_enrolment(self, user: User, code: str, client: ClientInfo) -> list[str]:
        """Turn TOTP on with a first code: the recovery codes; Unauthenticated for a wrong
        code (the failure is recorded)."""
        codes = await self.confirm(user, code)
        if not codes:
            await self._event("mfa.totp.confirm_failed", user.id, client, "failure")
            raise Unauthenticated(BAD_CODE)
        await self._event("mfa.totp.enabled", user.id, client)
        return codes

    async def turn_off(self, user_id: uuid.UUID, code: str, client: ClientInfo) -> None:
        """Remove TOTP given a current code or a recovery code (throttled like every check)."""
        if not await self.enabled(user_id):
            raise NotFound("Two-factor sign-in is not on.")
        try:
            kind = await self.verify_throttled(user_id, code)
        except SignInThrottled:
            await self._event("mfa.totp.remove_throttled", user_id, client, "denied")
            raise
        if kind is None:
            await self._event("mfa.totp.remove_failed", user_id, client, "failure")
            raise Unauthenticated(BAD_CODE)
        await self.remove(user_id)
        await self._event("mfa.totp.removed", user_id, client)
