"""Identity rules: registration, sign-in, the caller's profile."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.models import User
from storefront.identity.repository import UserRepository
from storefront.platform.errors import Conflict, Unauthenticated
from storefront.platform.security.passwords import PasswordHasher
from storefront.platform.security.tokens import TokenService


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def user_exists(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return await UserRepository(session).exists(user_id)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int


class IdentityService:
    def __init__(self, session: AsyncSession, passwords: PasswordHasher) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.passwords = passwords

    async def register(self, *, email: str, password: str, display_name: str) -> User:
        email = normalize_email(email)
        if await self.users.by_email(email) is not None:
            raise Conflict("An account with this email already exists.")
        user = User(
            email=email,
            display_name=display_name,
            password_hash=await self.passwords.hash(password),
        )
        try:
            async with self.session.begin_nested():
                await self.users.add(user)
        except IntegrityError as exc:  # lost a race with a concurrent registration
            raise Conflict("An account with this email already exists.") from exc
        return user

    async def authenticate(self, *, email: str, password: str) -> User:
        """Same answer and comparable time whether or not the account exists."""
        user = await self.users.by_email(normalize_email(email))
        if user is None or not user.is_active:
            await self.passwords.verify_dummy(password)
            raise Unauthenticated("Incorrect email or password.")
        ok, new_hash = await self.passwords.verify(password, user.password_hash)
        if not ok:
            raise Unauthenticated("Incorrect email or password.")
        if new_hash is not None:  # parameters were raised since this hash was made
            user.password_hash = new_hash
        return user

    @staticmethod
    def issue_tokens(tokens: TokenService, user: User) -> IssuedTokens:
        return IssuedTokens(
            access_token=tokens.issue(str(user.id)), expires_in=tokens.access_ttl_seconds
        )

    async def get_active(self, user_id: uuid.UUID) -> User | None:
        return await self.users.get_active(user_id)

    async def update_profile(self, user: User, *, display_name: str | None) -> User:
        if display_name is not None:
            user.display_name = display_name
        await self.session.flush()
        return user
