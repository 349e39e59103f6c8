"""TOTP multi-factor (RFC 6238, pyotp) and one-time recovery codes.

A code is accepted for the current 30-second step and one step either side, and only once:
accepting it moves ``last_used_step`` forward with a compare-and-set, so two requests racing
with the same code cannot both succeed. Seeds are sealed at rest; recovery codes are stored
as keyed hashes and each works once.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.models import TotpFactor, User
from storefront.identity.profile import open_profile
from storefront.identity.repository import MfaRepository
from storefront.platform.db import utcnow
from storefront.platform.errors import Conflict, NotFound
from storefront.platform.runtime import Runtime

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


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
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repo = MfaRepository(session)
        self.box = runtime.security.totp_box

    def _totp(self, factor: TotpFactor) -> pyotp.TOTP:
        return pyotp.TOTP(self.box.open(factor.secret_sealed).decode(), digits=DIGITS)

    def _code_hash(self, user_id: uuid.UUID, code: str) -> str:
        return self.box.mac(f"{user_id}:{normalize_recovery_code(code)}".encode())

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
        profile = await open_profile(self.session, self.runtime.vault, user)
        uri = pyotp.TOTP(secret, digits=DIGITS).provisioning_uri(
            name=profile.email if profile else str(user.id),
            issuer_name=self.runtime.security.auth.totp_issuer,
        )
        return Enrolment(secret=secret, otpauth_uri=uri)

    async def _check_totp(self, factor: TotpFactor, code: str) -> bool:
        code = code.strip()
        if len(code) != DIGITS or not code.isdigit():
            return False
        step = matching_step(self._totp(factor), code, time.time())
        return step is not None and await self.repo.claim_step(factor.user_id, step)

    async def confirm(self, user: User, code: str) -> list[str]:
        factor = await self.repo.totp(user.id)
        if factor is None:
            raise NotFound("Start the enrolment first (POST /auth/mfa/totp).")
        if factor.confirmed_at is not None:
            raise Conflict("Two-factor sign-in is already on.")
        if not await self._check_totp(factor, code):
            return []
        factor.confirmed_at = utcnow()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await self.repo.replace_recovery_codes(
            user.id, [self._code_hash(user.id, c) for c in codes]
        )
        return codes

    async def verify(self, user_id: uuid.UUID, code: str) -> str | None:
        """Check a TOTP or recovery code; returns the kind that matched, or None."""
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
