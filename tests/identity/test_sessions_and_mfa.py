"""Identity hardening over HTTP: sessions and refresh-token rotation, revocation, key
rotation, TOTP and recovery codes, recent-auth, password policy and brute-force throttling.

Every test runs on SQLite and PostgreSQL, each with the revocation list and throttling
counters in-process ("memory") and in the real Redis ("redis").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
import pyotp
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import update

from storefront.app import create_app
from storefront.auditlog import SecurityEvent
from storefront.identity import mfa
from storefront.identity.models import AuthSession
from storefront.resources import Resources
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import PASSWORD, V1, unique
from tests.support.identity import access_claims, foreign_signed, sign, unsigned_token
from tests.support.problems import assert_problem

LOGIN = f"{V1}/auth/login"
REGISTER = f"{V1}/auth/register"
REFRESH = f"{V1}/auth/refresh"
LOGOUT = f"{V1}/auth/logout"
SESSIONS = f"{V1}/auth/sessions"
MFA_VERIFY = f"{V1}/auth/mfa/verify"
TOTP = f"{V1}/auth/mfa/totp"
TOTP_CONFIRM = f"{V1}/auth/mfa/totp/confirm"
PASSWORD_CHANGE = f"{V1}/auth/password"
ME = f"{V1}/users/me"
JWKS = "/.well-known/jwks.json"
CHEAP_HASHING = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


@dataclass
class RecordingSink:
    """A SecurityEventSink that keeps the events (and still checks them like the real one)."""

    events: list[SecurityEvent] = field(default_factory=list)

    async def emit(self, event: SecurityEvent) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events]


@dataclass
class Harness:
    client: httpx2.AsyncClient
    resources: Resources
    sink: RecordingSink

    async def register(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or f"{unique('sec')}@example.com"
        r = await self.client.post(
            REGISTER, json={"email": email, "password": password, "display_name": "Sec"}
        )
        assert r.status_code == 201, r.text
        return email

    async def login(self, email: str, password: str = PASSWORD, **kwargs: Any) -> httpx2.Response:
        return await self.client.post(LOGIN, json={"email": email, "password": password}, **kwargs)

    async def pair(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.login(email, password)
        assert r.status_code == 200, r.text
        assert "access_token" in r.json(), r.json()
        return dict(r.json())

    async def refresh(self, token: str) -> httpx2.Response:
        return await self.client.post(REFRESH, json={"refresh_token": token})

    async def me(self, access: str) -> httpx2.Response:
        return await self.client.get(ME, headers=bearer(access))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


Build = Callable[..., Awaitable[Harness]]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def build(
    database_url: str, store: str, request: pytest.FixtureRequest
) -> AsyncIterator[Build]:
    """Start apps on this backend and store; ``await build(**auth_settings)``."""
    started: list[tuple[LifespanManager, httpx2.AsyncClient, Resources]] = []
    redis: dict[str, Any] = {}
    if store == "redis":
        redis = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }

    async def make(trusted_proxies: list[str] | None = None, **auth: Any) -> Harness:
        settings = make_settings(
            database_url,
            auth={**CHEAP_HASHING, **auth},
            trusted_proxies=trusted_proxies or [],
            # the general API rate limiter is tested on its own; these tests are about
            # identity's brute-force throttling, which stays on
            rate_limit_enabled=False,
            **redis,
        )
        app = create_app(settings)
        manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
        await manager.__aenter__()
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx2.AsyncClient(transport=transport, base_url="http://testserver")
        resources: Resources = app.state.resources
        started.append((manager, client, resources))
        sink = RecordingSink()
        resources.security.audit = sink
        return Harness(client, resources, sink)

    try:
        yield make
    finally:
        for i, (manager, client, resources) in enumerate(reversed(started)):
            await client.aclose()
            if i == len(started) - 1:
                await _empty_tables(resources)
            await manager.__aexit__(None, None, None)


@pytest.fixture
async def h(build: Build) -> Harness:
    return await build()


async def set_session(resources: Resources, session_id: str, **values: Any) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuthSession).where(AuthSession.id == uuid.UUID(session_id)).values(**values)
        )


def sid_of(access: str) -> str:
    return str(jwt.decode(access, options={"verify_signature": False})["sid"])


# --- refresh-token rotation ---------------------------------------------------------------


async def test_refresh_rotates_the_pair_and_spends_the_old_token(h: Harness) -> None:
    first = await h.pair(await h.register())
    r = await h.refresh(first["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert sid_of(second["access_token"]) == sid_of(first["access_token"])
    assert (await h.me(second["access_token"])).status_code == 200
    # the new token works once, then it is spent too
    third = await h.refresh(second["refresh_token"])
    assert third.status_code == 200, third.text


async def test_replaying_a_spent_token_revokes_the_whole_family(h: Harness) -> None:
    first = await h.pair(await h.register())
    second = (await h.refresh(first["refresh_token"])).json()
    assert (await h.me(second["access_token"])).status_code == 200

    replay = await h.refresh(first["refresh_token"])

    assert_problem(replay, 401, slug="unauthenticated")
    # the newest refresh token of the family and the session's access tokens are dead too
    assert_problem(await h.refresh(second["refresh_token"]), 401)
    assert_problem(await h.me(second["access_token"]), 401)
    assert_problem(await h.me(first["access_token"]), 401)
    assert "refresh.reuse_detected" in h.sink.names()


async def test_an_unknown_refresh_token_is_refused(h: Harness) -> None:
    assert_problem(await h.refresh("not-a-token-we-issued"), 401, slug="unauthenticated")


async def test_a_refresh_token_is_never_a_bearer_token(h: Harness) -> None:
    pair = await h.pair(await h.register())
    r = await h.me(pair["refresh_token"])
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_the_overlap_window_accepts_only_the_previous_token_once(build: Build) -> None:
    h = await build(refresh_overlap_seconds=30)
    t1 = await h.pair(await h.register())
    t2 = (await h.refresh(t1["refresh_token"])).json()

    again = await h.refresh(t1["refresh_token"])  # the other tab, with the previous token
    assert again.status_code == 200, again.text
    t3 = again.json()

    # ...but only once: a second use of the previous token is reuse
    assert_problem(await h.refresh(t1["refresh_token"]), 401)
    assert_problem(await h.refresh(t3["refresh_token"]), 401)
    assert_problem(await h.me(t3["access_token"]), 401)
    assert t2["refresh_token"] != t3["refresh_token"]


async def test_the_overlap_window_never_accepts_an_older_token(build: Build) -> None:
    h = await build(refresh_overlap_seconds=30)
    t1 = await h.pair(await h.register())
    t2 = (await h.refresh(t1["refresh_token"])).json()
    t3 = (await h.refresh(t2["refresh_token"])).json()

    assert_problem(await h.refresh(t1["refresh_token"]), 401)  # two generations back
    assert_problem(await h.refresh(t3["refresh_token"]), 401)  # family revoked


async def test_without_an_overlap_window_the_previous_token_is_reuse(h: Harness) -> None:
    t1 = await h.pair(await h.register())
    t2 = (await h.refresh(t1["refresh_token"])).json()
    assert_problem(await h.refresh(t1["refresh_token"]), 401)
    assert_problem(await h.refresh(t2["refresh_token"]), 401)


async def test_ten_concurrent_refreshes_give_at_most_one_usable_successor(h: Harness) -> None:
    pair = await h.pair(await h.register())

    results = await asyncio.gather(*(h.refresh(pair["refresh_token"]) for _ in range(10)))

    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}, statuses
    successors = [r.json()["refresh_token"] for r in results if r.status_code == 200]
    usable = [t for t in successors if (await h.refresh(t)).status_code == 200]
    assert len(usable) <= 1


async def test_a_session_past_its_absolute_lifetime_cannot_refresh(h: Harness) -> None:
    pair = await h.pair(await h.register())
    await set_session(
        h.resources, sid_of(pair["access_token"]), expires_at=datetime.now(UTC) - timedelta(1)
    )
    assert_problem(await h.refresh(pair["refresh_token"]), 401)


async def test_an_idle_session_cannot_refresh(build: Build) -> None:
    h = await build(session_idle_timeout_seconds=3600)
    pair = await h.pair(await h.register())
    await set_session(
        h.resources,
        sid_of(pair["access_token"]),
        last_used_at=datetime.now(UTC) - timedelta(hours=2),
    )
    assert_problem(await h.refresh(pair["refresh_token"]), 401)


async def test_a_new_session_gets_its_absolute_lifetime_from_the_settings(
    build: Build,
) -> None:
    h = await build(session_absolute_lifetime_seconds=3600)
    pair = await h.pair(await h.register())
    async with h.resources.sessionmaker() as session:
        row = await session.get(AuthSession, uuid.UUID(sid_of(pair["access_token"])))
    assert row is not None
    assert row.expires_at - row.created_at == timedelta(seconds=3600)


# --- logout and sessions ------------------------------------------------------------------


async def test_logout_ends_the_session_and_its_tokens_at_once(h: Harness) -> None:
    pair = await h.pair(await h.register())
    r = await h.client.post(LOGOUT, headers=bearer(pair["access_token"]))
    assert r.status_code == 204, r.text
    assert_problem(await h.me(pair["access_token"]), 401)
    assert_problem(await h.refresh(pair["refresh_token"]), 401)
    assert "session.revoked" in h.sink.names()


async def test_logout_needs_a_token(h: Harness) -> None:
    assert_problem(await h.client.post(LOGOUT), 401)


async def test_sessions_are_listed_and_one_can_be_revoked(h: Harness) -> None:
    email = await h.register()
    mine = await h.pair(email)
    other = (
        await h.client.post(
            LOGIN,
            json={"email": email, "password": PASSWORD},
            headers={"User-Agent": "phone-app/1.0"},
        )
    ).json()

    r = await h.client.get(SESSIONS, headers=bearer(mine["access_token"]))
    assert r.status_code == 200, r.text
    listed = {s["id"]: s for s in r.json()}
    assert set(listed) == {sid_of(mine["access_token"]), sid_of(other["access_token"])}
    assert listed[sid_of(mine["access_token"])]["current"] is True
    other_row = listed[sid_of(other["access_token"])]
    assert other_row["current"] is False
    assert other_row["user_agent"] == "phone-app/1.0"
    assert other_row["ip_address"]
    assert {"created_at", "last_used_at"} <= set(other_row)

    d = await h.client.delete(
        f"{SESSIONS}/{sid_of(other['access_token'])}", headers=bearer(mine["access_token"])
    )
    assert d.status_code == 204, d.text
    assert_problem(await h.me(other["access_token"]), 401)
    assert_problem(await h.refresh(other["refresh_token"]), 401)
    assert (await h.me(mine["access_token"])).status_code == 200
    after = await h.client.get(SESSIONS, headers=bearer(mine["access_token"]))
    assert [s["id"] for s in after.json()] == [sid_of(mine["access_token"])]


async def test_nobody_can_revoke_someone_elses_session(h: Harness) -> None:
    alice = await h.pair(await h.register())
    bob = await h.pair(await h.register())
    r = await h.client.delete(
        f"{SESSIONS}/{sid_of(bob['access_token'])}", headers=bearer(alice["access_token"])
    )
    assert_problem(r, 404)
    assert (await h.me(bob["access_token"])).status_code == 200
    unknown = await h.client.delete(
        f"{SESSIONS}/{uuid.uuid4()}", headers=bearer(alice["access_token"])
    )
    assert_problem(unknown, 404)


# --- access tokens and keys ---------------------------------------------------------------


BAD: dict[str, Callable[[Resources, str], str]] = {
    "tampered": lambda rt, uid: _tamper(rt.tokens.issue(uid)),
    "expired": lambda rt, uid: rt.tokens.issue(
        uid, now=datetime.now(UTC) - timedelta(seconds=rt.tokens.access_ttl_seconds + 5)
    ),
    "alg-none": lambda _rt, uid: unsigned_token(access_claims(uid), alg="none"),
    "unknown-kid": lambda _rt, uid: foreign_signed(access_claims(uid), kid="nope"),
    "wrong-typ": lambda rt, uid: sign(rt, access_claims(uid, typ="mfa")),
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[5] != "A" else "B").join([signature[:5], signature[6:]])
    return f"{header}.{payload}.{flipped}"


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_access_tokens_are_refused(h: Harness, case: str) -> None:
    email = await h.register()
    pair = await h.pair(email)
    uid = str(jwt.decode(pair["access_token"], options={"verify_signature": False})["sub"])
    r = await h.me(BAD[case](h.resources, uid))
    assert_problem(r, 401, slug="unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_jwks_publishes_the_public_keys_that_verify_access_tokens(h: Harness) -> None:
    pair = await h.pair(await h.register())
    r = await h.client.get(JWKS)
    assert r.status_code == 200, r.text
    keys = r.json()["keys"]
    assert keys
    assert all("d" not in k for k in keys)  # never a private part
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    [jwk] = [k for k in keys if k["kid"] == kid]
    claims = jwt.decode(
        pair["access_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience="storefront-api",
        issuer="storefront",
    )
    assert claims["typ"] == "access"


async def test_key_rotation_keeps_existing_tokens_valid(build: Build) -> None:
    h = await build()
    other_process = await build()  # a second process sharing the database
    pair = await h.pair(await h.register())
    old_kid = jwt.get_unverified_header(pair["access_token"])["kid"]

    new_key = await h.resources.security.keys.rotate()

    assert (await h.me(pair["access_token"])).status_code == 200
    fresh = await h.pair(await h.register())
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_key.kid != old_kid
    kids = {k["kid"] for k in (await h.client.get(JWKS)).json()["keys"]}
    assert {old_kid, new_key.kid} <= kids
    # the other process has never seen the new key: it picks it up from the database
    assert (await other_process.me(fresh["access_token"])).status_code == 200
    assert (await other_process.me(pair["access_token"])).status_code == 200
    refreshed = await h.refresh(pair["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


# --- TOTP and recovery codes --------------------------------------------------------------


# the moment TOTP codes are checked at in this module: ten seconds into a step, set, not
# waited for (a real clock could cross into the next step between two requests)
TOTP_NOW = float(int(time.time()) // mfa.STEP_SECONDS * mfa.STEP_SECONDS + 10)


@pytest.fixture(autouse=True)
def totp_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mfa, "totp_clock", lambda: TOTP_NOW)


def current_step() -> int:
    """The 30-second step the app's TOTP clock is in."""
    return int(TOTP_NOW) // mfa.STEP_SECONDS


@dataclass
class MfaUser:
    email: str
    secret: str
    recovery_codes: list[str]
    access_token: str

    def code(self, step: int) -> str:
        return pyotp.TOTP(self.secret).generate_otp(step)


async def mfa_user(h: Harness) -> MfaUser:
    email = await h.register()
    pair = await h.pair(email)
    r = await h.client.post(TOTP, headers=bearer(pair["access_token"]))
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    enrolment = r.json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert enrolment["secret"] in enrolment["otpauth_uri"]
    step = current_step()
    # confirm with the previous step's code, so the current one is still unused
    code = pyotp.TOTP(enrolment["secret"]).generate_otp(step - 1)
    c = await h.client.post(TOTP_CONFIRM, json={"code": code}, headers=bearer(pair["access_token"]))
    assert c.status_code == 200, c.text
    codes = c.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    return MfaUser(email, enrolment["secret"], codes, pair["access_token"])


async def mfa_token(h: Harness, email: str) -> str:
    r = await h.login(email)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    assert "refresh_token" not in body
    return str(body["mfa_token"])


async def verify(h: Harness, token: str, code: str) -> httpx2.Response:
    return await h.client.post(MFA_VERIFY, json={"mfa_token": token, "code": code})


async def test_with_mfa_on_sign_in_needs_a_code(h: Harness) -> None:
    user = await mfa_user(h)
    step = current_step()
    r = await verify(h, await mfa_token(h, user.email), user.code(step))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert (await h.me(r.json()["access_token"])).status_code == 200
    assert "login.mfa_required" in h.sink.names()


@pytest.mark.parametrize("offset", [-1, 1])
async def test_a_code_one_step_either_side_is_accepted(h: Harness, offset: int) -> None:
    user = await mfa_user(h)  # used step - 1 to confirm
    step = current_step()
    if offset == -1:  # step-1 was spent on confirming: use a fresh account's view
        async with h.resources.sessionmaker() as session, session.begin():
            from storefront.identity.models import TotpFactor

            await session.execute(update(TotpFactor).values(last_used_step=None))
    r = await verify(h, await mfa_token(h, user.email), user.code(step + offset))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("offset", [-2, 2])
async def test_a_code_two_steps_away_is_refused(h: Harness, offset: int) -> None:
    user = await mfa_user(h)
    step = current_step()
    r = await verify(h, await mfa_token(h, user.email), user.code(step + offset))
    assert_problem(r, 401, slug="unauthenticated")


async def test_a_totp_code_works_once_only(h: Harness) -> None:
    user = await mfa_user(h)
    step = current_step()
    first = await verify(h, await mfa_token(h, user.email), user.code(step))
    assert first.status_code == 200, first.text
    replay = await verify(h, await mfa_token(h, user.email), user.code(step))
    assert_problem(replay, 401)
    assert "login.mfa_failed" in h.sink.names()


async def test_a_totp_code_works_once_even_when_two_requests_race(h: Harness) -> None:
    user = await mfa_user(h)
    tokens = [await mfa_token(h, user.email) for _ in range(5)]
    step = current_step()
    results = await asyncio.gather(*(verify(h, t, user.code(step)) for t in tokens))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 401, 401, 401, 401], statuses


async def test_recovery_codes_work_once_each(h: Harness) -> None:
    user = await mfa_user(h)
    code = user.recovery_codes[0]
    first = await verify(h, await mfa_token(h, user.email), code)
    assert first.status_code == 200, first.text
    assert_problem(await verify(h, await mfa_token(h, user.email), code), 401)
    # another code still works, also typed in upper case without the dash
    other = user.recovery_codes[1].upper().replace("-", "")
    assert (await verify(h, await mfa_token(h, user.email), other)).status_code == 200


async def test_the_mfa_token_is_refused_anywhere_else(h: Harness) -> None:
    user = await mfa_user(h)
    token = await mfa_token(h, user.email)
    r = await h.me(token)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_problem(await h.refresh(token), 401)
    assert_problem(await h.client.get(SESSIONS, headers=bearer(token)), 401)
    # and an access token is no mfa_token
    assert_problem(await verify(h, user.access_token, user.recovery_codes[0]), 401)


async def test_guessing_at_mfa_verify_is_throttled(build: Build) -> None:
    h = await build(throttle_account_max_failures=3)
    user = await mfa_user(h)
    token = await mfa_token(h, user.email)
    for _ in range(3):
        assert_problem(await verify(h, token, "000000"), 401)
    r = await verify(h, token, user.recovery_codes[0])  # even a right code waits now
    assert_problem(r, 429, slug="sign-in-throttled")
    assert int(r.headers["retry-after"]) >= 1


async def test_enrolment_and_removal(h: Harness) -> None:
    user = await mfa_user(h)
    again = await h.client.post(TOTP, headers=bearer(user.access_token))
    assert_problem(again, 409)
    wrong = await h.client.request(
        "DELETE", TOTP, json={"code": "000000"}, headers=bearer(user.access_token)
    )
    assert_problem(wrong, 401)
    step = current_step()
    ok = await h.client.request(
        "DELETE", TOTP, json={"code": user.code(step)}, headers=bearer(user.access_token)
    )
    assert ok.status_code == 204, ok.text
    assert "access_token" in (await h.login(user.email)).json()
    assert "mfa.totp.removed" in h.sink.names()


async def test_confirming_with_a_wrong_code_leaves_mfa_off(h: Harness) -> None:
    email = await h.register()
    pair = await h.pair(email)
    assert (await h.client.post(TOTP, headers=bearer(pair["access_token"]))).status_code == 201
    r = await h.client.post(
        TOTP_CONFIRM, json={"code": "000000"}, headers=bearer(pair["access_token"])
    )
    assert_problem(r, 401)
    assert "access_token" in (await h.login(email)).json()


# --- recent authentication and password changes -------------------------------------------


def stale_token(h: Harness, access: str, minutes: int = 11) -> str:
    claims = jwt.decode(access, options={"verify_signature": False})
    return h.resources.tokens.issue(
        claims["sub"],
        session_id=claims["sid"],
        auth_time=datetime.now(UTC) - timedelta(minutes=minutes),
    )


async def test_a_password_change_needs_a_recent_sign_in(h: Harness) -> None:
    email = await h.register()
    pair = await h.pair(email)
    old = stale_token(h, pair["access_token"])
    r = await h.client.post(
        PASSWORD_CHANGE,
        json={"current_password": PASSWORD, "new_password": "a-brand-new-passphrase"},
        headers=bearer(old),
    )
    body = assert_problem(r, 401, slug="recent-auth-required")
    assert body["max_age"] == 600
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    assert (await h.login(email)).status_code == 200  # unchanged


async def test_removing_mfa_needs_a_recent_sign_in(h: Harness) -> None:
    user = await mfa_user(h)
    step = current_step()
    r = await h.client.request(
        "DELETE",
        TOTP,
        json={"code": user.code(step)},
        headers=bearer(stale_token(h, user.access_token)),
    )
    assert_problem(r, 401, slug="recent-auth-required")
    assert (await h.login(user.email)).json()["mfa_required"] is True


async def test_a_password_change_revokes_every_other_session(h: Harness) -> None:
    email = await h.register()
    here = await h.pair(email)
    elsewhere = await h.pair(email)
    new_password = "an-entirely-new-passphrase"

    r = await h.client.post(
        PASSWORD_CHANGE,
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(here["access_token"]),
    )

    assert r.status_code == 204, r.text
    assert_problem(await h.me(elsewhere["access_token"]), 401)
    assert_problem(await h.refresh(elsewhere["refresh_token"]), 401)
    assert (await h.me(here["access_token"])).status_code == 200
    assert (await h.refresh(here["refresh_token"])).status_code == 200
    assert_problem(await h.login(email), 401)
    assert (await h.login(email, new_password)).status_code == 200
    assert "password.changed" in h.sink.names()


async def test_a_password_change_needs_the_current_password(h: Harness) -> None:
    email = await h.register()
    pair = await h.pair(email)
    r = await h.client.post(
        PASSWORD_CHANGE,
        json={"current_password": "not-my-password-at-all", "new_password": "another-passphrase"},
        headers=bearer(pair["access_token"]),
    )
    assert_problem(r, 403)
    assert (await h.login(email)).status_code == 200


# --- password policy ----------------------------------------------------------------------


@pytest.mark.parametrize("password", ["1qaz2wsx3edc", "Q1W2E3R4T5Y6", "123qweasdzxc"])
async def test_a_blocklisted_password_is_refused_with_a_reason(h: Harness, password: str) -> None:
    r = await h.client.post(
        REGISTER,
        json={"email": f"{unique('b')}@example.com", "password": password, "display_name": "B"},
    )
    body = assert_problem(r, 422, slug="weak-password")
    assert "common" in body["detail"]
    pair = await h.pair(await h.register())
    change = await h.client.post(
        PASSWORD_CHANGE,
        json={"current_password": PASSWORD, "new_password": password},
        headers=bearer(pair["access_token"]),
    )
    assert_problem(change, 422, slug="weak-password")


async def test_a_short_password_is_refused(h: Harness) -> None:
    r = await h.client.post(
        REGISTER,
        json={"email": f"{unique('s')}@example.com", "password": "x" * 11, "display_name": "S"},
    )
    assert_problem(r, 422)


async def test_a_128_character_password_is_accepted_and_never_truncated(h: Harness) -> None:
    # a walk through the alphabet in steps of 7 (not a run of neighbours: that is refused)
    password = "".join(chr(ord("a") + i * 7 % 26) for i in range(127)) + "Z"
    email = await h.register(password=password)
    assert (await h.login(email, password)).status_code == 200
    assert_problem(await h.login(email, password[:-1] + "Y"), 401)
    assert_problem(await h.login(email, password[:72]), 401)


async def test_unicode_passwords_work_and_are_normalised(h: Harness) -> None:
    composed = "pässwörd-ünïcödé-日本語-🔑"
    email = await h.register(password=composed)
    assert (await h.login(email, composed)).status_code == 200
    decomposed = composed.replace("ä", "a\u0308").replace("ö", "o\u0308")
    assert (await h.login(email, decomposed)).status_code == 200
    assert_problem(await h.login(email, composed.replace("ä", "a")), 401)


# --- brute-force throttling ---------------------------------------------------------------


async def test_failed_sign_ins_are_throttled_per_account(build: Build) -> None:
    h = await build(throttle_account_max_failures=5, throttle_address_max_failures=100)
    email = await h.register()
    for _ in range(5):
        assert_problem(await h.login(email, "wrong-password-guess"), 401)

    r = await h.login(email)  # even the right password waits now
    body = assert_problem(r, 429, slug="sign-in-throttled")
    assert int(r.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(r.headers["retry-after"])
    # another account from the same address is not affected
    assert (await h.login(await h.register())).status_code == 200
    assert "login.throttled" in h.sink.names()


async def test_throttling_looks_the_same_for_unknown_accounts(build: Build) -> None:
    h = await build(throttle_account_max_failures=2, throttle_address_max_failures=100)
    known = await h.register()
    unknown = f"{unique('ghost')}@example.com"
    for email in (known, unknown):
        for _ in range(2):
            assert_problem(await h.login(email, "wrong-password-guess"), 401)
    a = assert_problem(await h.login(known, "wrong-password-guess"), 429)
    b = assert_problem(await h.login(unknown, "wrong-password-guess"), 429)
    assert a["detail"] == b["detail"]
    assert a["type"] == b["type"]


async def test_the_back_off_grows_and_a_success_resets_it(build: Build) -> None:
    h = await build(
        throttle_account_max_failures=2,
        throttle_address_max_failures=100,
        throttle_base_delay_seconds=1,
    )
    email = await h.register()
    # a success resets the account's counter
    assert_problem(await h.login(email, "wrong-password-guess"), 401)
    assert (await h.login(email)).status_code == 200
    assert_problem(await h.login(email, "wrong-password-guess"), 401)
    assert (await h.login(email)).status_code == 200

    delays = []
    for _ in range(3):
        assert_problem(await h.login(email, "wrong-password-guess"), 401)
        blocked = await h.login(email, "wrong-password-guess")
        if blocked.status_code == 401:  # not locked yet (first round: one more failure)
            blocked = await h.login(email, "wrong-password-guess")
        assert_problem(blocked, 429)
        delay = int(blocked.headers["retry-after"])
        delays.append(delay)
        await asyncio.sleep(delay + 0.2)
    assert delays[0] < delays[1] < delays[2], delays


async def test_failed_sign_ins_are_throttled_per_address_despite_x_forwarded_for(
    build: Build,
) -> None:
    h = await build(throttle_account_max_failures=100, throttle_address_max_failures=5)
    for i in range(5):
        r = await h.client.post(
            LOGIN,
            json={"email": f"{unique('spray')}@example.com", "password": "wrong-guess-1"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        )
        assert_problem(r, 401)
    spoofed = await h.client.post(
        LOGIN,
        json={"email": await h.register(), "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.77"},
    )
    assert_problem(spoofed, 429, slug="sign-in-throttled")


async def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(build: Build) -> None:
    h = await build(
        trusted_proxies=["127.0.0.1/32"],
        throttle_account_max_failures=100,
        throttle_address_max_failures=3,
    )
    email = await h.register()
    for _ in range(3):
        r = await h.client.post(
            LOGIN,
            json={"email": f"{unique('x')}@example.com", "password": "wrong-guess-1"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert_problem(r, 401)
    same = await h.client.post(
        LOGIN,
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert_problem(same, 429)
    other = await h.client.post(
        LOGIN,
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.10"},
    )
    assert other.status_code == 200, other.text


# --- security events ----------------------------------------------------------------------


async def test_security_events_cover_the_flows_and_never_carry_secrets(h: Harness) -> None:
    email = await h.register()
    secrets_seen: list[str] = [PASSWORD, "wrong-password-guess"]
    assert_problem(await h.login(email, "wrong-password-guess"), 401)
    pair = await h.pair(email)
    secrets_seen += [pair["access_token"], pair["refresh_token"]]
    second = (await h.refresh(pair["refresh_token"])).json()
    secrets_seen += [second["access_token"], second["refresh_token"]]
    assert_problem(await h.refresh(pair["refresh_token"]), 401)  # reuse
    user = await mfa_user(h)
    secrets_seen += [user.secret, *user.recovery_codes, user.access_token]
    token = await mfa_token(h, user.email)
    secrets_seen.append(token)
    assert (await verify(h, token, user.recovery_codes[0])).status_code == 200
    new_password = "another-long-passphrase"
    secrets_seen.append(new_password)
    assert (
        await h.client.post(
            PASSWORD_CHANGE,
            json={"current_password": PASSWORD, "new_password": new_password},
            headers=bearer(user.access_token),
        )
    ).status_code == 204
    pair2 = await h.pair(email)
    assert (await h.client.post(LOGOUT, headers=bearer(pair2["access_token"]))).status_code == 204

    names = set(h.sink.names())
    assert {
        "login.failed",
        "login.succeeded",
        "login.mfa_required",
        "refresh.succeeded",
        "refresh.reuse_detected",
        "mfa.totp.enabled",
        "password.changed",
        "session.revoked",
    } <= names
    for event in h.sink.events:
        text = repr(event.as_record())
        for secret in secrets_seen:
            assert secret not in text, (event.name, secret[:6])


def test_an_event_refuses_secret_fields() -> None:
    with pytest.raises(ValueError, match="secrets"):
        SecurityEvent("login.failed", details={"password": "x"})


async def test_the_default_sink_logs_structured_records_without_secrets(
    caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    from storefront.auditlog import LoggingSecurityEventSink

    caplog.set_level("INFO", logger="storefront.security")
    await LoggingSecurityEventSink().emit(
        SecurityEvent("login.succeeded", user_id="u1", session_id="s1", client_address="10.0.0.1")
    )
    [record] = [r for r in caplog.records if r.name == "storefront.security"]
    event = record.security_event  # type: ignore[attr-defined]
    assert event["name"] == "login.succeeded"
    assert event["user_id"] == "u1"
    assert database_url  # runs once per backend, like its neighbours


# --- Redis down ---------------------------------------------------------------------------


async def test_with_redis_down_sign_in_fails_closed(database_url: str) -> None:
    settings = make_settings(database_url, redis_url="redis://127.0.0.1:1/0", auth=CHEAP_HASHING)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            email = f"{unique('down')}@example.com"
            reg = await client.post(
                REGISTER, json={"email": email, "password": PASSWORD, "display_name": "D"}
            )
            assert reg.status_code == 201, reg.text
            r = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
            assert_problem(r, 503, slug="security-backend-unavailable")
            assert r.headers["retry-after"]
            token = app.state.resources.tokens.issue(reg.json()["id"], session_id=str(uuid.uuid4()))
            me = await client.get(ME, headers=bearer(token))
            assert_problem(me, 503)
        await _empty_tables(app.state.resources)
