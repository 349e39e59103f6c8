"""The per-account budget of `POST /auth/mfa/verify` follows the account the MFA token names,
not the token's text: a new password sign-in (a new token) gets no fresh budget. A token
that does not verify is charged to the client address. Real HTTP through the rate-limited
app, on SQLite and PostgreSQL, with the counters in Redis."""

from __future__ import annotations

import httpx2

from tests.identity.test_sessions_and_mfa import (
    MFA_VERIFY,
    Harness,
    RecordingSink,
    mfa_token,
    mfa_user,
    totp_clock,  # noqa: F401 - autouse: TOTP codes are checked at a set moment
)
from tests.support.problems import assert_problem
from tests.web.test_rate_limit import build, client_for, serving

# four sign-ins of one email (register, sign-in, two MFA challenges) fit; verify may try four
BUDGET = {"auth_rate": "1000/minute", "auth_account_rate": "4/minute"}


async def _verify(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post(MFA_VERIFY, json={"mfa_token": token, "code": "000000"})


async def test_a_new_mfa_token_does_not_renew_the_accounts_budget(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(database_url, redis_url=redis_url, redis_prefix=redis_prefix, protection=BUDGET)
    async with serving(app), client_for(app) as client:
        h = Harness(client, app.state.resources, RecordingSink())
        user = await mfa_user(h)
        first = await mfa_token(h, user.email)
        for _ in range(4):
            r = await _verify(client, first)
            assert r.status_code == 401, r.text
        # a fresh password sign-in: a new token for the same account, the same spent budget
        second = await mfa_token(h, user.email)
        assert second != first
        refused = await _verify(client, second)
        body = assert_problem(refused, 429)
        assert "auth-account" in body["detail"]


async def test_an_invalid_mfa_token_is_charged_to_the_address(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    app = build(database_url, redis_url=redis_url, redis_prefix=redis_prefix, protection=BUDGET)
    async with serving(app):
        guesser, other = client_for(app, "192.0.2.30"), client_for(app, "192.0.2.40")
        async with guesser, other:
            for n in range(4):  # a different made-up token each time
                r = await _verify(guesser, f"not-a-token-{n}")
                assert r.status_code == 401, r.text
            body = assert_problem(await _verify(guesser, "not-a-token-new"), 429)
            assert "auth-account" in body["detail"]
            # another address is not affected
            assert (await _verify(other, "not-a-token-x")).status_code == 401
