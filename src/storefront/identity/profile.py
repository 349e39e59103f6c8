"""A user's personal data (email, display name), stored sealed with their data key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.models import User
from storefront.vault import PersonalDataVault


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's personal data, opened (it is stored sealed with their data key)."""

    email: str
    display_name: str


def email_aad(user_id: uuid.UUID) -> str:
    return f"users.email:{user_id}"


def display_name_aad(user_id: uuid.UUID) -> str:
    return f"users.display_name:{user_id}"


async def open_profile(
    session: AsyncSession, vault: PersonalDataVault, user: User
) -> Profile | None:
    """The user's email and display name; None once their data key is destroyed (erased)."""
    email, name = await vault.open_many(
        session,
        [
            (user.id, user.email_sealed, email_aad(user.id)),
            (user.id, user.display_name_sealed, display_name_aad(user.id)),
        ],
    )
    if email is None or name is None:
        return None
    return Profile(email=email, display_name=name)
