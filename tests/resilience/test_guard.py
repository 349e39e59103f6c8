"""The guard around outgoing calls, against a real aiohttp server behind a fault-injecting
proxy: each circuit-breaker state change, fast refusals that never reach the network, the
deadline on a hung peer, the bulkhead, retries for idempotent calls only, and breaker state
shared through Redis (and kept in the process while Redis is away). No timing asserts:
states are polled with deadlines; counts of connections show what reached the network."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from storefront.infra.redis import create_redis
from storefront.resilience import (
    BulkheadFull,
    CircuitOpen,
    DependencyUnavailable,
    Policy,
    Resilience,
)
from storefront.settings import ResilienceSettings
from tests.support.faults import Fault, FaultProxy
from tests.support.servers import free_port

DEADLINE = 30.0


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    """A real HTTP server on loopback: POST /ok answers 200 (POST: aiohttp retries an
    idempotent method once by itself on a reset connection, which would blur the counts)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield "127.0.0.1", runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def proxy(server: tuple[str, int]) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(*server) as proxy:
        yield proxy


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # a new connection per call: each call that reaches the network is one accepted connection
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


def resilience(redis: Redis | None = None, prefix: str = "sf-test:", **settings: Any) -> Resilience:
    defaults: dict[str, Any] = {
        "failure_threshold": 3,
        "cool_down_seconds": 1.0,
        "timeout_seconds": 20.0,
        "connect_timeout_seconds": 5.0,
        "retry_attempts": 3,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
    }
    return Resilience(ResilienceSettings(**{**defaults, **settings}), redis=redis, prefix=prefix)


def dependency() -> str:
    return f"dep-{uuid.uuid4().hex[:8]}"  # metrics and circuits of this test's own


def get(http: aiohttp.ClientSession, proxy: FaultProxy) -> Callable[[Policy], Awaitable[int]]:
    async def call(policy: Policy) -> int:
        timeout = aiohttp.ClientTimeout(sock_connect=policy.connect_timeout_seconds)
        async with http.post(f"http://{proxy.address}/ok", timeout=timeout) as response:
            await response.read()
            return response.status

    return call


async def guarded(res: Resilience, name: str, call: Callable[[Policy], Awaitable[int]]) -> int:
    async with res.guard(name) as policy:
        return await call(policy)


async def fail_until_open(
    res: Resilience, name: str, call: Callable[[Policy], Awaitable[int]], failures: int
) -> None:
    for _ in range(failures):
        with pytest.raises((aiohttp.ClientError, OSError, TimeoutError)):
            await guarded(res, name, call)
    assert res.breakers.state(name) == "opened"


async def until_not_refused(
    res: Resilience, name: str, call: Callable[[Policy], Awaitable[int]]
) -> Any:
    """Call until the circuit lets one through (after its cool-down): the result, or the
    error the call itself raised."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return await guarded(res, name, call)
        except CircuitOpen:
            assert time.monotonic() < deadline, "the circuit never half-opened"
            await asyncio.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - the probe's own failure is the result
            return exc


def calls(name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "storefront_dependency_calls_total", {"dependency": name, "outcome": outcome}
    )
    return value or 0.0


def state_gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("storefront_circuit_breaker_state", {"dependency": name})


async def test_closed_until_the_threshold_then_open_answers_without_calling(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(), dependency(), get(http, proxy)
    assert await guarded(res, name, call) == 200
    await proxy.set(Fault.RESET)
    for _ in range(2):  # below the threshold (3): still closed
        with pytest.raises((aiohttp.ClientError, OSError)):
            await guarded(res, name, call)
        assert res.breakers.state(name) == "closed"
    with pytest.raises((aiohttp.ClientError, OSError)):
        await guarded(res, name, call)
    assert res.breakers.state(name) == "opened"
    assert state_gauge(name) == 2
    reached = proxy.accepted
    await proxy.set(Fault.NONE)  # healthy again, but the circuit does not know it yet
    with pytest.raises(CircuitOpen) as refused:
        await guarded(res, name, call)
    assert proxy.accepted == reached  # nothing was sent
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == str(refused.value.retry_after)
    assert refused.value.retry_after >= 1
    assert calls(name, "failure") == 3
    assert calls(name, "open") == 1
    assert calls(name, "success") == 1


async def test_a_success_resets_the_failure_count(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(), dependency(), get(http, proxy)
    for _ in range(3):  # 2 failures, a success, 2 failures: never 3 in a row
        await proxy.set(Fault.RESET)
        for _ in range(2):
            with pytest.raises((aiohttp.ClientError, OSError)):
                await guarded(res, name, call)
        await proxy.set(Fault.NONE)
        assert await guarded(res, name, call) == 200
    assert res.breakers.state(name) == "closed"


async def test_half_open_probe_success_closes(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(), dependency(), get(http, proxy)
    await proxy.set(Fault.RESET)
    await fail_until_open(res, name, call, 3)
    await proxy.set(Fault.NONE)
    reached = proxy.accepted
    assert await until_not_refused(res, name, call) == 200  # the probe
    assert proxy.accepted == reached + 1
    assert res.breakers.state(name) == "closed"
    assert state_gauge(name) == 0
    assert await guarded(res, name, call) == 200


async def test_half_open_probe_failure_reopens(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(cool_down_seconds=1.0), dependency(), get(http, proxy)
    await proxy.set(Fault.RESET)
    await fail_until_open(res, name, call, 3)
    reached = proxy.accepted
    probe = await until_not_refused(res, name, call)
    assert isinstance(probe, aiohttp.ClientError | OSError), probe
    assert proxy.accepted == reached + 1  # one probe, and it failed
    assert res.breakers.state(name) == "opened"  # at once: no second threshold to reach
    assert state_gauge(name) == 2


async def test_one_probe_at_a_time_while_half_open(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(), dependency(), get(http, proxy)
    await proxy.set(Fault.RESET)
    await fail_until_open(res, name, call, 3)
    await proxy.set(Fault.HANG)
    reached = proxy.accepted
    probe = asyncio.create_task(until_not_refused(res, name, call))
    try:
        await proxy.wait_accepted(reached + 1)  # the probe is with the hung peer
        with pytest.raises(CircuitOpen):
            await guarded(res, name, call)
        assert proxy.accepted == reached + 1
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
    # a cancelled probe is neither a success nor a failure: the next caller probes
    await proxy.set(Fault.NONE)
    assert await until_not_refused(res, name, call) == 200
    assert res.breakers.state(name) == "closed"


async def test_a_hung_peer_is_cut_off_at_the_deadline_and_counts_as_a_failure(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res = resilience(timeout_seconds=0.5, failure_threshold=2)
    name, call = dependency(), get(http, proxy)
    await proxy.set(Fault.HANG)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await guarded(res, name, call)
    assert res.breakers.state(name) == "opened"
    assert calls(name, "timeout") == 2


async def test_latency_within_the_deadline_succeeds_beyond_it_times_out(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(timeout_seconds=3.0), dependency(), get(http, proxy)
    await proxy.set(Fault.LATENCY, latency=0.05)
    assert await guarded(res, name, call) == 200
    await proxy.set(Fault.LATENCY, latency=60.0)
    with pytest.raises(TimeoutError):
        await guarded(res, name, call)
    assert calls(name, "success") == 1
    assert calls(name, "timeout") == 1


async def test_refused_connections_open_the_circuit(http: aiohttp.ClientSession) -> None:
    res, name = resilience(), dependency()
    port = free_port()  # nothing listens there

    async def call(policy: Policy) -> int:
        async with http.post(f"http://127.0.0.1:{port}/ok") as response:
            return response.status

    await fail_until_open(res, name, call, 3)
    with pytest.raises(CircuitOpen):
        await guarded(res, name, call)


async def test_errors_the_dependency_meant_do_not_count(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    class Declined(Exception):
        pass

    res, name = resilience(), dependency()
    for _ in range(5):
        with pytest.raises(Declined):
            async with res.guard(name, exclude=(Declined,)):
                raise Declined
    assert res.breakers.state(name) == "closed"
    assert calls(name, "excluded") == 5


async def test_a_full_bulkhead_refuses_the_extra_call(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res = resilience(max_concurrent=2, max_wait_seconds=0.05, failure_threshold=1)
    name, call = dependency(), get(http, proxy)
    await proxy.set(Fault.HANG)
    held = [asyncio.create_task(guarded(res, name, call)) for _ in range(2)]
    try:
        await proxy.wait_accepted(2)
        with pytest.raises(BulkheadFull) as refused:
            await guarded(res, name, call)
        assert proxy.accepted == 2  # the extra call never left
        assert refused.value.headers["Retry-After"] == "1"
        assert calls(name, "busy") == 1
        # a refusal is not a failure of the dependency (threshold 1: one would open it)
        assert res.breakers.state(name) == "closed"
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    await proxy.set(Fault.NONE)
    assert await guarded(res, name, call) == 200  # slots are given back


async def test_only_idempotent_calls_are_retried(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res = resilience(failure_threshold=100, retry_attempts=3)
    name, call = dependency(), get(http, proxy)
    policy = res.policy(name)
    await proxy.set(Fault.RESET)
    with pytest.raises((aiohttp.ClientError, OSError)):
        await res.call(name, lambda: call(policy), idempotent=False)
    assert proxy.accepted == 1
    with pytest.raises((aiohttp.ClientError, OSError)):
        await res.call(name, lambda: call(policy), idempotent=True)
    assert proxy.accepted == 1 + 3
    retries = REGISTRY.get_sample_value("storefront_dependency_retries_total", {"dependency": name})
    assert retries == 2


async def test_an_idempotent_call_retried_through_a_transient_fault_succeeds(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res = resilience(failure_threshold=100, retry_attempts=5)
    name, call = dependency(), get(http, proxy)
    policy = res.policy(name)
    await proxy.set(Fault.RESET)

    async def heal_after_first() -> int:
        if proxy.accepted == 1:
            await proxy.set(Fault.NONE)
        return await call(policy)

    assert await res.call(name, heal_after_first, idempotent=True) == 200
    assert proxy.accepted == 2


async def test_an_open_circuit_is_not_retried(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    res = resilience(failure_threshold=1, cool_down_seconds=60)
    name, call = dependency(), get(http, proxy)
    policy = res.policy(name)
    await proxy.set(Fault.RESET)
    await fail_until_open(res, name, call, 1)
    reached = proxy.accepted
    with pytest.raises(CircuitOpen):
        await res.call(name, lambda: call(policy), idempotent=True)
    assert proxy.accepted == reached
    assert calls(name, "open") == 1  # refused once, not once per attempt


async def test_a_circuit_per_target_keeps_the_others_closed(
    proxy: FaultProxy, server: tuple[str, int], http: aiohttp.ClientSession
) -> None:
    res, name, call = resilience(failure_threshold=1), dependency(), get(http, proxy)
    await proxy.set(Fault.RESET)
    with pytest.raises((aiohttp.ClientError, OSError)):
        async with res.guard(name, key="bad") as policy:
            await call(policy)
    with pytest.raises(CircuitOpen):
        async with res.guard(name, key="bad"):
            pass
    good = f"http://{server[0]}:{server[1]}/ok"
    async with res.guard(name, key="good"), http.post(good) as response:
        assert response.status == 200
    assert state_gauge(name) == 2  # the worst of its circuits


def test_per_dependency_overrides_take_precedence() -> None:
    settings = ResilienceSettings(
        failure_threshold=5,
        timeout_seconds=10,
        dependencies={"payments": {"failure_threshold": 2, "max_concurrent": 4}},
    )
    res = Resilience(settings, redis=None, clients={"payments": {"timeout_seconds": 7.0}})
    payments, mail = res.policy("payments"), res.policy("mail")
    assert (payments.failure_threshold, payments.max_concurrent) == (2, 4)
    assert payments.timeout_seconds == 7.0  # the client's own, under no override
    assert (mail.failure_threshold, mail.timeout_seconds) == (5, 10)


async def test_breaker_state_is_shared_through_redis(
    proxy: FaultProxy, http: aiohttp.ClientSession, redis_url: str, redis_prefix: str
) -> None:
    """Two processes' worth of breakers (two instances, each its own Redis pool): a circuit
    opened by one is open for the other, which sends nothing."""
    first_redis, second_redis = create_redis(redis_url), create_redis(redis_url)
    try:
        first = resilience(first_redis, redis_prefix, cool_down_seconds=60)
        second = resilience(second_redis, redis_prefix, cool_down_seconds=60)
        name, call = dependency(), get(http, proxy)
        assert await guarded(second, name, call) == 200  # closed for the second, too
        await proxy.set(Fault.RESET)
        await fail_until_open(first, name, call, 3)
        reached = proxy.accepted
        with pytest.raises(CircuitOpen):
            await guarded(second, name, call)
        assert proxy.accepted == reached
        assert second.breakers.state(name) == "opened"
        assert await first_redis.exists(f"{redis_prefix}breaker:{name}") == 1
    finally:
        await first_redis.aclose()
        await second_redis.aclose()


async def test_a_probe_that_succeeds_closes_the_circuit_for_every_process(
    proxy: FaultProxy, http: aiohttp.ClientSession, redis_url: str, redis_prefix: str
) -> None:
    first_redis, second_redis = create_redis(redis_url), create_redis(redis_url)
    try:
        first = resilience(first_redis, redis_prefix, cool_down_seconds=1.0)
        second = resilience(second_redis, redis_prefix, cool_down_seconds=1.0)
        name, call = dependency(), get(http, proxy)
        await proxy.set(Fault.RESET)
        await fail_until_open(first, name, call, 3)
        await proxy.set(Fault.NONE)
        assert await until_not_refused(first, name, call) == 200
        reached = proxy.accepted
        assert await guarded(second, name, call) == 200
        assert proxy.accepted == reached + 1
        assert second.breakers.state(name) == "closed"
    finally:
        await first_redis.aclose()
        await second_redis.aclose()


async def test_with_redis_away_the_circuit_lives_in_the_process(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    """A configured Redis that is down never fails a call: the breaker falls back to the
    process's own state (and still opens)."""
    away = create_redis(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        res, name, call = resilience(away), dependency(), get(http, proxy)
        assert await guarded(res, name, call) == 200
        await proxy.set(Fault.RESET)
        await fail_until_open(res, name, call, 3)
        reached = proxy.accepted
        with pytest.raises(CircuitOpen):
            await guarded(res, name, call)
        assert proxy.accepted == reached
    finally:
        await away.aclose()


async def test_the_refusal_is_a_503_problem_with_retry_after() -> None:
    from fastapi import FastAPI
    from httpx2 import ASGITransport, AsyncClient

    from storefront.web.problems import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/pay")
    async def pay() -> None:
        raise CircuitOpen("payments", retry_after=7)

    @app.get("/busy")
    async def busy() -> None:
        raise BulkheadFull("payments")

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        for path, retry_after, reason in (("/pay", "7", "circuit-open"), ("/busy", "1", "busy")):
            r = await client.get(path)
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["retry-after"] == retry_after
            body = r.json()
            assert body["type"] == "/problems/dependency-unavailable"
            assert body["dependency"] == "payments"
            assert body["reason"] == reason
    assert issubclass(CircuitOpen, DependencyUnavailable)


def test_per_dependency_overrides_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storefront.settings import Settings

    monkeypatch.setenv("STOREFRONT_RESILIENCE__FAILURE_THRESHOLD", "7")
    monkeypatch.setenv("STOREFRONT_RESILIENCE__DEPENDENCIES__PAYMENTS__COOL_DOWN_SECONDS", "90")
    res = Resilience(Settings().resilience, redis=None)
    assert res.policy("payments").cool_down_seconds == 90
    assert res.policy("payments").failure_threshold == 7
    assert res.policy("mail").cool_down_seconds == 30
