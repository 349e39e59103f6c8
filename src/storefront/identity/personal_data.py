"""What identity holds about a user, for the privacy domain: the GDPR export (articles 15
and 20) and erasure (article 17). See docs/privacy.md."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.identity.models import AuthSession, RecoveryCode, RefreshToken, TotpFactor, User
from storefront.identity.service import _account_key, contact_of, password_change_key
from storefront.identity.sessions import ClientInfo, SessionService
from storefront.kit.errors import NotFound, SecurityBackendUnavailable
from storefront.resources import Resources
from storefront.vault import PersonalDataVault

# no password hash ever looks like this: nothing verifies against it
UNUSABLE_PASSWORD = "!erased"  # noqa: S105 - a marker, not a password


def erased_email_index(user_id: uuid.UUID) -> str:
    """Frees the address (it may register again) while the column stays unique; not hex, so
    it never equals a real blind index."""
    return f"erased:{user_id}"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


async def account_data(
    session: AsyncSession, user_id: uuid.UUID, *, vault: PersonalDataVault
) -> dict[str, Any]:
    """The profile, every session (without token material) and the two-factor settings
    (without the seed or codes) of an active user."""
    user = await session.get(User, user_id)
    contact = await contact_of(session, user_id, vault=vault)
    if user is None or contact is None:
        raise NotFound("No such user.")
    email, display_name = contact
    sessions = (
        (
            await session.execute(
                select(AuthSession)
                .where(AuthSession.user_id == user_id)
                .order_by(AuthSession.created_at, AuthSession.id)
            )
        )
        .scalars()
        .all()
    )
    factor = await session.get(TotpFactor, user_id)
    codes_left = await session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return {
        "profile": {
            "id": str(user.id),
            "email": email,
            "display_name": display_name,
            "is_admin": user.is_admin,
            "created_at": _iso(user.created_at),
            "updated_at": _iso(user.updated_at),
        },
        "sessions": [
            {
                "id": str(s.id),
                "created_at": _iso(s.created_at),
                "last_used_at": _iso(s.last_used_at),
                "expires_at": _iso(s.expires_at),
                "signed_in_at": _iso(s.auth_time),
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "revoked_at": _iso(s.revoked_at),
                "revoked_reason": s.revoked_reason,
            }
            for s in sessions
        ],
        "two_factor": {
            "totp_enabled": factor is not None and factor.confirmed_at is not None,
            "totp_confirmed_at": _iso(factor.confirmed_at) if factor is not None else None,
            "recovery_codes_left": int(codes_left or 0),
        },
    }


async def erase_account(
    session: AsyncSession, resources: Resources, user_id: uuid.UUID, client: ClientInfo
) -> None:
    """Identity's part of an erasure, in the caller's transaction: every session revoked and
    its access tokens blocked, every refresh token deleted, sign-in made impossible, the
    email's blind index freed, session addresses and user agents dropped, the two-factor
    factor and recovery codes deleted, the sign-in throttling counters purged. The email and
    display name stay sealed; the caller destroys the data key that reads them."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    contact = await contact_of(session, user_id, vault=resources.vault)
    await SessionService(session, resources).revoke_others(user_id, None, "account_erased", client)
    # and every access token of the account, whatever its session (one whose session had
    # already expired may still live): requests are authenticated without the user row
    try:
        await resources.security.revocations.revoke_user(
            str(user_id), resources.tokens.access_ttl_seconds
        )
    except RedisError as exc:
        raise SecurityBackendUnavailable(
            "The account's access tokens could not be blocked; nothing was erased."
        ) from exc
    session_ids = select(AuthSession.id).where(AuthSession.user_id == user_id)
    await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.session_id.in_(session_ids))
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id)
        .values(ip_address=None, user_agent=None)
        .execution_options(synchronize_session=False)
    )
    for model in (RecoveryCode, TotpFactor):
        await session.execute(
            delete(model)
            .where(model.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
    user.is_active = False
    user.password_hash = UNUSABLE_PASSWORD
    user.email_index = erased_email_index(user_id)
    await session.flush()
    kit = resources.security
    try:
        if contact is not None:
            await kit.account_throttle.reset(_account_key(contact[0]))
        await kit.mfa_throttle.reset(str(user_id))
        await kit.pair_throttle.reset(password_change_key(user_id))
    except RedisError as exc:
        raise SecurityBackendUnavailable("Erasure is unavailable; try again soon.") from exc


# --- retention ------------------------------------------------------------------------------


def _ended_before(when: datetime, idle: timedelta) -> ColumnElement[bool]:
    """Sessions that had ended (revoked, past their lifetime or idle) by ``when``."""
    return or_(
        AuthSession.revoked_at <= when,
        AuthSession.expires_at <= when,
        AuthSession.last_used_at <= when - idle,
    )


async def purge_sessions(
    session: AsyncSession,
    *,
    now: datetime,
    idle: timedelta,
    keep: timedelta,
    dry_run: bool,
    limit: int | None = None,
) -> dict[str, int]:
    """Refresh tokens of every ended session (none can be used again), then the sessions that
    ended more than ``keep`` ago (their addresses and user agents go with them).
    With ``dry_run`` only counts; with ``limit`` at most that many rows of each."""
    ended_ids = select(AuthSession.id).where(_ended_before(now, idle))
    old = _ended_before(now - keep, idle)
    tokens = RefreshToken.session_id.in_(ended_ids)
    if dry_run:
        return {
            "refresh_tokens": await _count(session, RefreshToken, tokens),
            "sessions": await _count(session, AuthSession, old),
        }
    if limit is not None:
        tokens = RefreshToken.id.in_(select(RefreshToken.id).where(tokens).limit(limit))
        # a session goes once its tokens are gone (deleted above, counted as tokens), not
        # with them by the cascade: the counts are the same in batches as in one pass
        tokenless = (
            ~select(RefreshToken.id).where(RefreshToken.session_id == AuthSession.id).exists()
        )
        old = AuthSession.id.in_(select(AuthSession.id).where(old & tokenless).limit(limit))
    spent = await session.execute(
        delete(RefreshToken).where(tokens).execution_options(synchronize_session=False)
    )
    ended = await session.execute(
        delete(AuthSession).where(old).execution_options(synchronize_session=False)
    )
    return {
        "refresh_tokens": int(getattr(spent, "rowcount", 0)),
        "sessions": int(getattr(ended, "rowcount", 0)),
    }


async def _count(session: AsyncSession, model: Any, where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(where)) or 0)
