from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.models import AuthSession, RecoveryCode, RefreshToken, TotpFactor, User
from storefront.vault import DataKeyRow, PersonalDataVault

# built once: the statement every authenticated read of the account runs (its compiled
# form and cache key are then reused, not rebuilt per request)
_ACTIVE_WITH_KEY = (
    select(User, *PersonalDataVault.key_columns())
    .outerjoin(DataKeyRow, DataKeyRow.subject_id == User.id)
    .where(User.id == bindparam("user_id", type_=User.__table__.c.id.type))
    .where(User.is_active.is_(True))
)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_active(
        self, user_id: uuid.UUID, *, vault: PersonalDataVault | None = None
    ) -> User | None:
        """With ``vault``: the user's data key row comes along in the same query and is
        cached on the session, so opening their profile later costs no query."""
        if vault is None:
            stmt = select(User).where(User.id == user_id, User.is_active.is_(True))
            return (await self.session.execute(stmt)).scalar_one_or_none()
        row = (await self.session.execute(_ACTIVE_WITH_KEY, {"user_id": user_id})).one_or_none()
        if row is None:
            return None
        user: User = row[0]
        vault.remember(
            self.session,
            user.id,
            key_version=row.key_version,
            wrapped_key=row.wrapped_key,
            master_version=row.master_version,
            destroyed_at=row.destroyed_at,
        )
        return user

    async def by_email_index(self, email_index: str) -> User | None:
        """The user whose email has this blind index (see PersonalDataVault.blind_index)."""
        stmt = select(User).where(User.email_index == email_index)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def exists(self, user_id: uuid.UUID) -> bool:
        stmt = select(User.id).where(User.id == user_id, User.is_active.is_(True))
        return (await self.session.execute(stmt)).first() is not None

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *rows: AuthSession | RefreshToken) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def get(self, session_id: uuid.UUID) -> AuthSession | None:
        return await self.session.get(AuthSession, session_id)

    async def token_by_hash(self, token_hash: str) -> RefreshToken | None:
        stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def successor(self, token_id: uuid.UUID) -> RefreshToken | None:
        stmt = select(RefreshToken).where(RefreshToken.previous_id == token_id)
        return (await self.session.execute(stmt)).scalars().first()

    async def spend(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Compare-and-set: only one caller ever spends a token."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.spent_at.is_(None))
            .values(spent_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(await self.session.execute(stmt)) == 1

    async def use_overlap(self, token_id: uuid.UUID) -> bool:
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.overlap_used.is_(False))
            .values(overlap_used=True)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(await self.session.execute(stmt)) == 1

    async def touch(self, session_id: uuid.UUID, now: datetime) -> None:
        stmt = (
            update(AuthSession)
            .where(AuthSession.id == session_id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(stmt)

    async def revoke(
        self, session_ids: list[uuid.UUID], now: datetime, reason: str
    ) -> list[uuid.UUID]:
        """Revoke the live sessions among ``session_ids``; returns those it revoked."""
        if not session_ids:
            return []
        stmt = (
            update(AuthSession)
            .where(AuthSession.id.in_(session_ids), AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(AuthSession.id)
            .execution_options(synchronize_session=False)
        )
        return list((await self.session.execute(stmt)).scalars().all())

    async def live_for_user(self, user_id: uuid.UUID, now: datetime) -> list[AuthSession]:
        stmt = (
            select(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.last_used_at.desc(), AuthSession.id.desc())
        )
        return list((await self.session.execute(stmt)).scalars().all())


class MfaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def totp(self, user_id: uuid.UUID) -> TotpFactor | None:
        return await self.session.get(TotpFactor, user_id)

    async def has_confirmed_totp(self, user_id: uuid.UUID) -> bool:
        stmt = select(TotpFactor.user_id).where(
            TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def claim_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Compare-and-set on the last accepted time step: a code works once, even in a race."""
        stmt = (
            update(TotpFactor)
            .where(
                TotpFactor.user_id == user_id,
                or_(TotpFactor.last_used_step.is_(None), TotpFactor.last_used_step < step),
            )
            .values(last_used_step=step)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(await self.session.execute(stmt)) == 1

    async def use_recovery_code(self, user_id: uuid.UUID, code_hash: str, now: datetime) -> bool:
        stmt = (
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(await self.session.execute(stmt)) == 1

    async def replace_recovery_codes(self, user_id: uuid.UUID, hashes: list[str]) -> None:
        await self.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        self.session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in hashes)
        await self.session.flush()

    async def remove_all(self, user_id: uuid.UUID) -> None:
        await self.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        await self.session.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))

    async def put_totp(self, factor: TotpFactor) -> None:
        await self.session.execute(delete(TotpFactor).where(TotpFactor.user_id == factor.user_id))
        self.session.add(factor)
        await self.session.flush()


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))
