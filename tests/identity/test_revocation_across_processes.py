"""The revocation promise across processes: access tokens are checked without the database
(signature remembered per token, one revocation lookup in Redis), so two real server
processes on one database and one Redis must still agree at once. A token is used on B
first (B remembers it as verified), revoked through A, and B refuses it on the very next
request: after logout, after a password change (the other sessions), after erasure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from tests.support.factories import unique
from tests.support.servers import cli_env, serve, stop, wait_ready

PASSWORD = "a-long-enough-password"
NEW_PASSWORD = "another-long-enough-password"
ME = "/api/v1/users/me"
CONSENTS = "/api/v1/users/me/consents"  # a route that takes the caller without the user row


@contextmanager
def server(env: dict[str, str]) -> Iterator[httpx2.Client]:
    proc, base = serve(env)
    try:
        wait_ready(base, proc)
        with httpx2.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        stop(proc)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: httpx2.Client, email: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def register(client: httpx2.Client) -> str:
    email = f"{unique('rev')}@example.com"
    r = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "Rev"},
    )
    assert r.status_code == 201, r.text
    return email


def accepted(client: httpx2.Client, token: str) -> bool:
    """Whether ``client``'s process honours ``token`` (both kinds of route agree)."""
    me = client.get(ME, headers=bearer(token)).status_code
    consents = client.get(CONSENTS, headers=bearer(token)).status_code
    assert me == consents, (me, consents)
    assert me in (200, 401), me
    return me == 200


def test_revocations_on_one_process_hold_at_once_on_the_other(
    migrated_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = cli_env(
        migrated_database, STOREFRONT_REDIS_URL=redis_url, STOREFRONT_REDIS_PREFIX=redis_prefix
    )
    with server(env) as a, server(env) as b:
        # logout on A: the session's token is refused on B
        email = register(a)
        token = sign_in(a, email)
        assert accepted(b, token)
        assert accepted(b, token)  # remembered as verified on B now
        assert a.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
        assert not accepted(b, token)

        # a password change on A: the other sessions' tokens are refused on B, the
        # session that changed it goes on
        email = register(a)
        changer, other = sign_in(a, email), sign_in(b, email)
        assert accepted(b, other)
        assert accepted(b, changer)
        r = a.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(changer),
        )
        assert r.status_code == 204, r.text
        assert not accepted(b, other)
        assert accepted(b, changer)

        # erasure on A: every token of the account is refused on B
        email = register(a)
        eraser, other = sign_in(a, email), sign_in(b, email)
        assert accepted(b, eraser)
        assert accepted(b, other)
        assert a.delete(ME, headers=bearer(eraser)).status_code == 202
        assert not accepted(b, eraser)
        assert not accepted(b, other)
        assert not accepted(a, other)
