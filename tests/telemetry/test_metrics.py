"""/metrics: RED by route template, in-flight, pool and query latency, KPIs, hooks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from storefront.kit.db import create_engine
from storefront.orders import metrics as order_metrics
from storefront.resources import Resources
from storefront.telemetry import metrics
from tests.support.factories import PASSWORD, V1, Api

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx2.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series_of(samples: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for (n, labels) in samples if n == name}


async def test_kpis_move_as_a_customer_signs_up_fails_a_sign_in_orders_and_cancels(
    client: httpx2.AsyncClient, api: Api
) -> None:
    before = await scrape(client)
    owner = await api.user()
    customer = await api.user()
    shop = await api.shop(owner)
    product = await api.product(owner, shop, price_cents=1250, currency="EUR")
    bad = await client.post(
        f"{V1}/auth/login", json={"email": customer.email, "password": "not-" + PASSWORD}
    )
    assert bad.status_code == 401
    order = await api.order(customer, shop, (product, 3))
    cancel = await client.post(
        f"{V1}/shops/{shop['id']}/orders/{order['id']}/cancel", headers=customer.auth
    )
    assert cancel.status_code == 200, cancel.text
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("storefront_signups_total") == 2
    assert delta("storefront_signins_failed_total", reason="bad_credentials") == 1
    assert delta("storefront_orders_placed_total", currency="EUR") == 1
    assert delta("storefront_order_value_cents_total", currency="EUR") == 3750
    assert delta("storefront_orders_cancelled_total") == 1
    route = "/api/v1/shops/{shop_id}/orders"
    assert delta("storefront_http_requests_total", method="POST", route=route, status_class="2xx")
    assert delta(
        "storefront_http_request_duration_seconds_count",
        method="POST",
        route=route,
        status_class="2xx",
    )
    assert delta(
        "storefront_http_requests_total",
        method="POST",
        route="/api/v1/auth/login",
        status_class="4xx",
    )


async def test_a_scan_of_random_urls_creates_no_new_series(client: httpx2.AsyncClient) -> None:
    await client.get("/no-such-page")  # the <unmatched> GET series exists from here on
    await client.post("/no-such-page")  # ... and the POST one
    await client.get(f"{V1}/shops/{uuid.uuid4()}")
    await scrape(client)  # the scrape's own series (the test alone in a process had none)
    before = await scrape(client)
    for _ in range(30):
        junk = uuid.uuid4().hex
        assert (await client.get(f"/{junk}/{junk}.php")).status_code == 404
        assert (await client.get(f"{V1}/shops/{uuid.uuid4()}")).status_code in (401, 404)
        assert (await client.post(f"/wp-admin/{junk}")).status_code in (404, 405)
    after = await scrape(client)
    names = ("storefront_http_requests_total", "storefront_http_request_duration_seconds_bucket")
    for name in names:
        new = series_of(after, name) - series_of(before, name)
        assert all(dict(labels).get("route") != f"/{junk}/{junk}.php" for labels in new)
        assert not {dict(labels)["route"] for labels in new} - {"<unmatched>"}, new
    routes = {dict(labels)["route"] for labels in series_of(after, names[0])}
    assert "<unmatched>" in routes
    assert "/api/v1/shops/{shop_id}" in routes
    assert not any(junk in route for route in routes)


async def test_requests_in_flight_counts_the_requests_being_served(
    app: FastAPI, client: httpx2.AsyncClient
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"ok": "yes"}

    app.add_api_route("/__test/slow", slow)
    baseline = value(await scrape(client), "storefront_http_requests_in_flight")
    pending = asyncio.create_task(client.get("/__test/slow"))
    await entered.wait()
    during = value(await scrape(client), "storefront_http_requests_in_flight")
    release.set()
    assert (await pending).status_code == 200
    after = value(await scrape(client), "storefront_http_requests_in_flight")
    # the scrape itself is in flight while it renders
    assert during == baseline + 1
    assert after == baseline


async def test_database_pool_and_query_latency(
    client: httpx2.AsyncClient, api: Api, resources: Resources
) -> None:
    before = await scrape(client)
    await api.user()
    after = await scrape(client)
    pool = "primary"
    assert value(after, "storefront_db_pool_connections_max", pool=pool) >= 1
    assert value(after, "storefront_db_pool_connections_in_use", pool=pool) >= 0
    assert value(after, "storefront_db_pool_waiting", pool=pool) == 0
    inserted = value(
        after, "storefront_db_query_duration_seconds_count", pool=pool, operation="INSERT"
    ) - value(before, "storefront_db_query_duration_seconds_count", pool=pool, operation="INSERT")
    assert inserted >= 1

    # a connection held outside a request shows as in use, and a second caller as waiting
    held = await resources.engine.connect()
    try:
        await held.exec_driver_sql("SELECT 1")
        during = await scrape(client)
        assert value(during, "storefront_db_pool_connections_in_use", pool=pool) >= 1
    finally:
        await held.close()


@pytest.mark.postgres
async def test_pool_waiting_counts_callers_queued_for_a_connection(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0, pool_timeout=10)
    name = f"test-{uuid.uuid4().hex[:6]}"
    metrics.instrument_engine(engine, pool_name=name)
    waiting = metrics.DB_POOL_WAITING.labels(pool=name)
    try:
        first = await engine.connect()
        second = asyncio.create_task(engine.connect().start())
        for _ in range(100):
            if waiting._value.get() == 1:
                break
            await asyncio.sleep(0.01)
        assert waiting._value.get() == 1
        assert metrics.DB_POOL_IN_USE.labels(pool=name)._value.get() == 1
        await first.close()
        conn = await second
        await conn.close()
        assert waiting._value.get() == 0
        assert metrics.DB_POOL_IN_USE.labels(pool=name)._value.get() == 0
    finally:
        await engine.dispose()


async def test_a_connection_checked_out_before_instrumenting_is_not_subtracted(
    tmp_path: Any,
) -> None:
    # start-up work (the signing-key load) may hold a connection while the engine is
    # instrumented; its check-in must not drive the in-use gauge below zero (CI saw -1)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/pool.db")
    name = f"test-{uuid.uuid4().hex[:6]}"
    in_use = metrics.DB_POOL_IN_USE.labels(pool=name)
    try:
        early = await engine.connect()
        await early.exec_driver_sql("SELECT 1")
        metrics.instrument_engine(engine, pool_name=name)
        await early.close()
        assert in_use._value.get() == 0
        late = await engine.connect()
        assert in_use._value.get() == 1
        await late.close()
        assert in_use._value.get() == 0
    finally:
        await engine.dispose()


async def test_hooks_for_caches_rate_limits_and_jobs_are_exposed(
    client: httpx2.AsyncClient,
) -> None:
    name = f"t{uuid.uuid4().hex[:6]}"
    metrics.record_cache(name, hit=True)
    metrics.record_cache(name, hit=True)
    metrics.record_cache(name, hit=False)
    metrics.record_rate_limit_refusal(name)
    metrics.set_queue_depth(name, 42)
    with metrics.observe_job(name):
        pass
    with pytest.raises(RuntimeError), metrics.observe_job(name):
        raise RuntimeError("job failed")
    order_metrics.record_payment(succeeded=True)
    samples = await scrape(client)
    assert value(samples, "storefront_cache_requests_total", cache=name, result="hit") == 2
    assert value(samples, "storefront_cache_requests_total", cache=name, result="miss") == 1
    assert value(samples, "storefront_rate_limit_refusals_total", limiter=name) == 1
    assert value(samples, "storefront_job_queue_depth", queue=name) == 42
    assert value(samples, "storefront_job_failures_total", job=name) == 1
    assert value(samples, "storefront_job_duration_seconds_count", job=name, outcome="success") == 1
    assert value(samples, "storefront_payments_total", result="succeeded") >= 1


async def test_readiness_is_exported_as_a_gauge(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/readyz")).status_code == 200
    assert value(await scrape(client), "storefront_ready") == 1


async def test_every_problem_body_carries_the_trace_and_request_ids(
    client: httpx2.AsyncClient,
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = await client.get(
        f"{V1}/users/me", headers={"traceparent": traceparent, "X-Request-ID": "req-12345678"}
    )
    body: dict[str, Any] = r.json()
    assert r.status_code == 401
    assert body["request_id"] == "req-12345678"
    assert body["trace_id"] == "0af7651916cd43dd8448eb211c80319c"  # joins the caller's trace
    fresh = (await client.get("/no-such-thing")).json()
    assert len(fresh["trace_id"]) == 32
    assert fresh["trace_id"] != body["trace_id"]
