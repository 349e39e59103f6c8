"""A sign-in storm meets a bounded hashing capacity (decision 0134): sign-ins past the
hashing threads and their short waiting line are refused at once with a 503 problem and
Retry-After, change nothing (no throttle failure, no session, no account), and the rest of
the service keeps answering meanwhile.

The hashes here are made deliberately slow (about a second), so "at once" is shown by order,
not by a clock: the refusal arrives while the admitted sign-in is still hashing. PostgreSQL
only: on SQLite the sign-ins already queue for its one connection, before they hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from prometheus_client import REGISTRY

from storefront.resources import Resources
from tests.conftest import make_settings
from tests.support.apps import running_app
from tests.support.factories import PASSWORD, V1, unique
from tests.support.problems import assert_problem

LOGIN = f"{V1}/auth/login"
REGISTER = f"{V1}/auth/register"
SESSIONS = f"{V1}/auth/sessions"
BUSY = "password-hashing-busy"
# about a second per hash on a quiet machine: far longer than a refusal takes
SLOW_HASHING = {"argon2_time_cost": 16, "argon2_memory_kib": 32768, "argon2_parallelism": 1}


@asynccontextmanager
async def service(
    database_url: str, **auth: Any
) -> AsyncIterator[tuple[httpx2.AsyncClient, Resources]]:
    settings = make_settings(
        database_url,
        # at the default nice 19 a hash of this cost could take longer than the request
        # timeout on a CI machine whose test workers keep both cores busy (a 504 seen so)
        # and a run bound far past any slow hash here, but for the test of that bound
        auth={
            **SLOW_HASHING,
            "hashing_threads": 1,
            "hashing_queue": 0,
            "hashing_nice": 0,
            "hashing_timeout_ms": 60_000,
            **auth,
        },
        rate_limit_enabled=False,  # the API rate limiter is not what is tested here
    )
    async with running_app(settings) as app:
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app.state.resources


async def register(client: httpx2.AsyncClient) -> str:
    email = f"{unique('storm')}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Storm"}
    r = await client.post(REGISTER, json=body)
    assert r.status_code == 201, r.text
    return email


def login(client: httpx2.AsyncClient, email: str, password: str = PASSWORD) -> Any:
    return client.post(LOGIN, json={"email": email, "password": password})


async def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):  # up to ~20 s: a generous bound for a loaded machine
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def admitted(
    resources: Resources, request: Awaitable[httpx2.Response], *, running: int = 1
) -> asyncio.Task[httpx2.Response]:
    """Start ``request`` and return once ``running`` hashes hold a thread (it is hashing)."""
    task = asyncio.ensure_future(request)
    await eventually(lambda: resources.passwords.running == running, "the sign-in started hashing")
    assert not task.done()
    return task


def refusals(operation: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_password_hashing_refusals_total", {"operation": operation}
    )
    return value or 0.0


def assert_busy(r: httpx2.Response) -> None:
    body = assert_problem(r, 503, slug=BUSY)
    assert int(r.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert "access_token" not in r.text
    assert "set-cookie" not in r.headers  # no device cookie either


async def test_sign_ins_past_the_hashing_capacity_are_refused_while_one_proceeds(
    postgres_url: str,
) -> None:
    async with service(postgres_url) as (client, resources):
        email = await register(client)
        before = refusals("verify")
        first = await admitted(resources, login(client, email))
        storm = await asyncio.gather(*(login(client, email) for _ in range(5)))
        assert not first.done(), "a refusal waited for the hash in flight"
        for r in storm:
            assert_busy(r)
        assert refusals("verify") == before + 5

        r = await first
        assert r.status_code == 200, r.text
        # only the admitted sign-in started a session
        listed = await client.get(
            SESSIONS, headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == 1


async def test_a_sign_in_whose_hash_runs_past_its_bound_is_refused_and_changes_nothing(
    postgres_url: str,
) -> None:
    """Decision 0207: a hash still running hashing_timeout_ms after it started (cores busy
    with other work after a failover) is a 503 with Retry-After, in time for the client to
    retry, not a sign-in the client times out on; it counts no failure and starts no session."""
    async with service(postgres_url, throttle_account_max_failures=1) as (client, resources):
        email = await register(client)
        # from now on every hash here outlasts its bound (a slow hash takes about a second)
        resources.passwords.max_run_seconds = 0.1
        before = refusals("verify")
        # one failure would lock the account: the refused wrong password must not count
        assert_busy(await login(client, email, "wrong-" + PASSWORD))
        assert refusals("verify") == before + 1
        await eventually(lambda: resources.passwords.running == 0, "the refused hash ended")
        resources.passwords.max_run_seconds = None
        client.cookies.clear()
        r = await login(client, email)
        assert r.status_code == 200, r.text
        listed = await client.get(
            SESSIONS, headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == 1  # the refused sign-in started none


async def test_a_refused_sign_in_counts_no_failure_against_the_account(
    postgres_url: str,
) -> None:
    # one failure would lock the account (and the address): refused guesses must not count
    async with service(
        postgres_url, throttle_account_max_failures=1, throttle_address_max_failures=1
    ) as (client, resources):
        email = await register(client)
        first = await admitted(resources, login(client, email))
        for r in await asyncio.gather(
            *(login(client, email, "wrong-" + PASSWORD) for _ in range(3))
        ):
            assert_busy(r)
        assert (await first).status_code == 200
        client.cookies.clear()  # no device cookie: the account-wide count would apply
        r = await login(client, email)
        assert r.status_code == 200, r.text


async def test_a_refused_sign_up_creates_no_account(postgres_url: str) -> None:
    async with service(postgres_url) as (client, resources):
        email = await register(client)
        first = await admitted(resources, login(client, email))
        newcomer = f"{unique('storm')}@example.com"
        body = {"email": newcomer, "password": PASSWORD, "display_name": "Late"}
        before = refusals("hash")
        assert_busy(await client.post(REGISTER, json=body))
        assert refusals("hash") == before + 1
        assert not first.done()
        assert (await first).status_code == 200
        r = await client.post(REGISTER, json=body)  # the address was never taken
        assert r.status_code == 201, r.text


async def test_one_waits_in_line_and_the_next_is_refused(postgres_url: str) -> None:
    async with service(postgres_url, hashing_queue=1, hashing_wait_ms=10_000) as (
        client,
        resources,
    ):
        email = await register(client)
        first = await admitted(resources, login(client, email))
        waiting = asyncio.ensure_future(login(client, email))
        await eventually(
            lambda: resources.passwords.waiting == 1,
            "the second sign-in is waiting for the thread",
        )
        assert_busy(await login(client, email))
        assert not first.done()
        assert not waiting.done()
        assert (await first).status_code == 200
        assert (await waiting).status_code == 200


async def test_a_wait_past_the_deadline_is_refused(postgres_url: str) -> None:
    async with service(postgres_url, hashing_queue=5, hashing_wait_ms=50) as (
        client,
        resources,
    ):
        email = await register(client)
        first = await admitted(resources, login(client, email))
        # admitted to the line, then refused when its wait runs out, long before the hash
        # in flight is done
        assert_busy(await login(client, email))
        assert not first.done()
        assert (await first).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/readyz"])  # /readyz queries the database
async def test_other_requests_are_served_while_every_hashing_thread_is_busy(
    postgres_url: str, path: str
) -> None:
    # the event loop is free while argon2 hashes (the GIL is released): had the hash held
    # it, nothing could be answered before the sign-in finished
    async with service(postgres_url, hashing_threads=2, hashing_queue=0) as (
        client,
        resources,
    ):
        emails = [await register(client), await register(client)]
        before = asyncio.ensure_future(login(client, emails[0]))
        signing_in = [before, await admitted(resources, login(client, emails[1]), running=2)]
        for _ in range(5):
            r = await client.get(path)
            assert r.status_code == 200, r.text
        assert not all(task.done() for task in signing_in)
        for task in signing_in:
            assert (await task).status_code == 200


async def test_a_sign_in_holds_no_database_connection_while_it_hashes(postgres_url: str) -> None:
    """The pool serves other requests through a sign-in's hash (and its wait for a thread):
    otherwise a storm would hold threads + queue pooled connections the whole time."""
    async with service(postgres_url) as (client, resources):
        email = await register(client)
        first = await admitted(resources, login(client, email))
        assert resources.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        r = await first
        assert r.status_code == 200, r.text
        # what the sign-in wrote after the hash was committed: its session is listed
        listed = await client.get(
            SESSIONS, headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        assert len(listed.json()) == 1
