"""Sessions (refresh-token families): issue, rotate, detect reuse, revoke.

A refresh token is 256 random bits, handed out once and stored only as its SHA-256. Each
refresh spends the token with a compare-and-set (``spent_at IS NULL``), so of any number of
concurrent refreshes with one token exactly one wins. Presenting a spent token is reuse: the
whole session is revoked (committed even though the request fails) and its access tokens go
on the revocation list. With an overlap window configured, the immediately previous token
is accepted once within the window (two browser tabs refreshing together); anything else
spent is reuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.auditlog import SecurityEvent, record_security_event
from storefront.identity.models import AuthSession, RefreshToken, User
from storefront.identity.repository import SessionRepository, UserRepository
from storefront.kit.db import utcnow
from storefront.kit.errors import NotFound, SecurityBackendUnavailable, Unauthenticated
from storefront.resources import Resources

INVALID_REFRESH = "The refresh token is invalid, expired or revoked."


@dataclass(frozen=True, slots=True)
class ClientInfo:
    address: str
    user_agent: str | None
    device_cookie: str | None = None  # as sent; only sign-in checks it (decision 0100)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


def hash_refresh_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def emit(resources: Resources, event: SecurityEvent, *, session: AsyncSession) -> None:
    """Report a security event (the sink: a log line) and record it in the audit log, in
    ``session``'s transaction; a failed or denied attempt is kept even if that rolls back."""
    await resources.security.audit.emit(event)
    record_security_event(session, event)


class SessionService:
    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources
        self.auth = resources.security.auth
        self.sessions = SessionRepository(session)
        self.users = UserRepository(session)

    # --- issuing --------------------------------------------------------------------------

    def _access_token(self, user: User, auth_session: AuthSession) -> str:
        return self.resources.tokens.issue(
            str(user.id),
            session_id=str(auth_session.id),
            auth_time=auth_session.auth_time,
            admin=user.is_admin,
        )

    async def _new_refresh_token(
        self, auth_session: AuthSession, previous_id: uuid.UUID | None
    ) -> str:
        raw = secrets.token_urlsafe(32)
        await self.sessions.add(
            RefreshToken(
                session_id=auth_session.id,
                token_hash=hash_refresh_token(raw),
                previous_id=previous_id,
            )
        )
        return raw

    async def start(self, user: User, client: ClientInfo) -> IssuedTokens:
        """A successful sign-in: a new session and its first token pair."""
        await self.resources.security.keys.ensure_loaded()
        now = utcnow()
        auth_session = AuthSession(
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            auth_time=now,
            expires_at=now + timedelta(seconds=self.auth.session_absolute_lifetime_seconds),
            user_agent=(client.user_agent or "")[:300] or None,
            ip_address=client.address[:64],
        )
        await self.sessions.add(auth_session)
        refresh = await self._new_refresh_token(auth_session, None)
        await self._end_sessions_past_the_cap(user.id, auth_session, client)
        return IssuedTokens(
            access_token=self._access_token(user, auth_session),
            refresh_token=refresh,
            expires_in=self.resources.tokens.access_ttl_seconds,
            session_id=auth_session.id,
        )

    async def _end_sessions_past_the_cap(
        self, user_id: uuid.UUID, current: AuthSession, client: ClientInfo
    ) -> None:
        """Keep at most ``max_sessions_per_user`` live sessions: end the least recently used
        others (decision 0122). Their refresh tokens stop at once; their access tokens are
        blocked too, or, if Redis is away, expire within the access-token lifetime (the
        sign-in itself must not fail for that)."""
        now = utcnow()
        live = await self.sessions.live_for_user(user_id, now)  # most recently used first
        others = [s for s in live if s.id != current.id]
        surplus = [s.id for s in others[self.auth.max_sessions_per_user - 1 :]]
        if not surplus:
            return
        revoked = await self.sessions.revoke(surplus, now, "session_limit")
        # the revocation list away: the sessions are ended all the same, tokens expire soon
        with contextlib.suppress(SecurityBackendUnavailable):
            await self._revoke_access_tokens(revoked)
        for sid in revoked:
            await emit(
                self.resources,
                SecurityEvent(
                    "session.revoked",
                    user_id=str(user_id),
                    session_id=str(sid),
                    client_address=client.address,
                    user_agent=client.user_agent,
                    reason="session_limit",
                ),
                session=self.session,
            )

    # --- refreshing -----------------------------------------------------------------------

    def _expired(self, auth_session: AuthSession, now: datetime) -> bool:
        idle = timedelta(seconds=self.auth.session_idle_timeout_seconds)
        return now >= auth_session.expires_at or now >= auth_session.last_used_at + idle

    async def refresh(self, raw: str, client: ClientInfo) -> IssuedTokens:
        await self.resources.security.keys.ensure_loaded()
        now = utcnow()
        token = await self.sessions.token_by_hash(hash_refresh_token(raw))
        if token is None:
            await self._event("refresh.failed", None, None, client, "unknown_token")
            raise Unauthenticated(INVALID_REFRESH, error="invalid_token")
        auth_session = await self.sessions.get(token.session_id)
        if auth_session is None:  # pragma: no cover - the foreign key forbids it
            raise Unauthenticated(INVALID_REFRESH, error="invalid_token")
        user = await self.users.get_active(auth_session.user_id)
        if auth_session.revoked_at is not None or user is None:
            await self._event("refresh.failed", auth_session, None, client, "session_revoked")
            raise Unauthenticated(INVALID_REFRESH, error="invalid_token")
        if self._expired(auth_session, now):
            await self._event("refresh.failed", auth_session, None, client, "session_expired")
            raise Unauthenticated(INVALID_REFRESH, error="invalid_token")

        spent_id: uuid.UUID | None = None
        if token.spent_at is None:
            if await self.sessions.spend(token.id, now):
                spent_id = token.id
        elif await self._overlap_allows(token, now):
            current = await self.sessions.successor(token.id)
            if current is not None and await self.sessions.spend(current.id, now):
                spent_id = current.id
        if spent_id is None:
            await self._reuse_detected(auth_session, client)
            raise Unauthenticated(INVALID_REFRESH, error="invalid_token")

        await self.sessions.touch(auth_session.id, now)
        refresh = await self._new_refresh_token(auth_session, spent_id)
        await self._event("refresh.succeeded", auth_session, None, client)
        return IssuedTokens(
            access_token=self._access_token(user, auth_session),
            refresh_token=refresh,
            expires_in=self.resources.tokens.access_ttl_seconds,
            session_id=auth_session.id,
        )

    async def _overlap_allows(self, token: RefreshToken, now: datetime) -> bool:
        window = self.auth.refresh_overlap_seconds
        if window <= 0 or token.spent_at is None or token.overlap_used:
            return False
        if now - token.spent_at > timedelta(seconds=window):
            return False
        current = await self.sessions.successor(token.id)
        if current is None or current.spent_at is not None:
            return False  # only the immediately previous token, never an older one
        return await self.sessions.use_overlap(token.id)

    async def _reuse_detected(self, auth_session: AuthSession, client: ClientInfo) -> None:
        """Revoke the family for good: committed now, although the request will fail."""
        await self.sessions.revoke([auth_session.id], utcnow(), "refresh_token_reuse")
        await self.session.commit()
        await self._revoke_access_tokens([auth_session.id])
        await self._event(
            "refresh.reuse_detected",
            auth_session,
            None,
            client,
            "spent_token_presented",
            outcome="denied",
        )

    # --- revoking -------------------------------------------------------------------------

    async def _revoke_access_tokens(self, session_ids: list[uuid.UUID]) -> None:
        ttl = self.resources.tokens.access_ttl_seconds
        try:
            for sid in session_ids:
                await self.resources.security.revocations.revoke(str(sid), ttl)
        except RedisError as exc:
            raise SecurityBackendUnavailable(
                "The session was revoked, but its access tokens could not be blocked yet."
            ) from exc

    async def revoke(
        self, user_id: uuid.UUID, session_id: uuid.UUID, reason: str, client: ClientInfo
    ) -> None:
        auth_session = await self.sessions.get(session_id)
        if auth_session is None or auth_session.user_id != user_id:
            raise NotFound("No such session.")
        revoked = await self.sessions.revoke([session_id], utcnow(), reason)
        await self._revoke_access_tokens(revoked or [session_id])
        await self._event("session.revoked", auth_session, user_id, client, reason)

    async def revoke_others(
        self, user_id: uuid.UUID, keep: uuid.UUID | None, reason: str, client: ClientInfo
    ) -> int:
        live = await self.sessions.live_for_user(user_id, utcnow())
        ids = [s.id for s in live if s.id != keep]
        revoked = await self.sessions.revoke(ids, utcnow(), reason)
        await self._revoke_access_tokens(revoked)
        for sid in revoked:
            await emit(
                self.resources,
                SecurityEvent(
                    "session.revoked",
                    user_id=str(user_id),
                    session_id=str(sid),
                    client_address=client.address,
                    user_agent=client.user_agent,
                    reason=reason,
                ),
                session=self.session,
            )
        return len(revoked)

    async def list_live(self, user_id: uuid.UUID) -> list[AuthSession]:
        now = utcnow()
        return [
            s for s in await self.sessions.live_for_user(user_id, now) if not self._expired(s, now)
        ]

    async def _event(
        self,
        name: str,
        auth_session: AuthSession | None,
        user_id: uuid.UUID | None,
        client: ClientInfo,
        reason: str | None = None,
        *,
        outcome: str | None = None,
    ) -> None:
        uid = user_id or (auth_session.user_id if auth_session else None)
        await emit(
            self.resources,
            SecurityEvent(
                name,
                outcome=outcome or ("failure" if name.endswith("failed") else "success"),
                user_id=str(uid) if uid else None,
                session_id=str(auth_session.id) if auth_session else None,
                client_address=client.address,
                user_agent=client.user_agent,
                reason=reason,
            ),
            session=self.session,
        )
