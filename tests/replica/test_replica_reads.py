"""Read/write splitting on a real streaming replica (decision 0150): reads go to the replica,
a client never reads older than its own last write (replay paused on the replica), lag is
measured and over a threshold reads fall back to the primary, and a replica that is stopped
under requests fails none of them."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from storefront.infra.replica import format_lsn, parse_lsn
from storefront.resources import Resources
from tests.conftest import require_or_skip
from tests.replica.conftest import (
    REPLICA_CLUSTER,
    caught_up,
    replica_settings,
    replica_sql,
)
from tests.support.apps import running_app
from tests.support.factories import Api, ProductInFactory, UserHandle, shop_with_staff

pytestmark = [pytest.mark.postgres, pytest.mark.replica]
V1, V2 = "/api/v1", "/api/v2"


def reads(target: str) -> float:
    return REGISTRY.get_sample_value("storefront_db_reads_total", {"target": target}) or 0.0


def fallbacks(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("storefront_db_replica_fallbacks_total", {"reason": reason})
        or 0.0
    )


@pytest.fixture
async def client(replica_app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=replica_app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def resources(replica_app: FastAPI) -> Resources:
    result: Resources = replica_app.state.resources
    return result


async def new_product(
    client: httpx2.AsyncClient, staff: UserHandle, shop: dict[str, Any]
) -> httpx2.Response:
    body = ProductInFactory.build().model_dump()
    r = await client.post(f"{V1}/shops/{shop['id']}/products", json=body, headers=staff.auth)
    assert r.status_code == 201, r.text
    return r


async def test_reads_use_the_replica_and_writes_carry_their_lsn(
    client: httpx2.AsyncClient, resources: Resources, postgres_url: str, replica_url: str
) -> None:
    api = Api(client, resources)
    _, staff, shop = await shop_with_staff(api)
    r = await new_product(client, staff, shop)
    lsn = r.headers["storefront-lsn"]
    assert parse_lsn(lsn) > 0
    assert format_lsn(parse_lsn(lsn)) == lsn.upper()
    await caught_up(postgres_url, replica_url)
    await resources.reads.check()
    assert resources.reads.state is not None
    assert resources.reads.state.up

    before = reads("replica")
    listing = await client.get(f"{V2}/shops/{shop['id']}/products")  # anonymous
    assert listing.status_code == 200, listing.text
    assert reads("replica") == before + 1
    assert "storefront-lsn" not in listing.headers  # a read commits nothing
    # the replica's own view: its backend for this app is the read pool
    names = await replica_sql(
        replica_url,
        "SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity "
        "WHERE application_name LIKE 'storefront%'",
    )
    assert "storefront-replica-reads" in names


async def test_a_client_reads_its_own_write_while_the_replica_replay_is_paused(
    client: httpx2.AsyncClient, resources: Resources, postgres_url: str, replica_url: str
) -> None:
    api = Api(client, resources)
    _, staff, shop = await shop_with_staff(api)
    await caught_up(postgres_url, replica_url)
    await resources.reads.check()
    await replica_sql(replica_url, "SELECT pg_wal_replay_pause()")

    created = await new_product(client, staff, shop)
    product = created.json()
    url = f"{V2}/shops/{shop['id']}/products/{product['id']}"
    behind = fallbacks("behind")

    # the writer (same credentials: the per-principal pin) reads its product at once
    mine = await client.get(url, headers=staff.auth)
    assert mine.status_code == 200, mine.text
    assert mine.json()["name"] == product["name"]
    # anyone who hands back the write's LSN (the response header) does too
    echoed = await client.get(url, headers={"Storefront-LSN": created.headers["storefront-lsn"]})
    assert echoed.status_code == 200, echoed.text
    assert fallbacks("behind") == behind + 2
    # the public v1 read is a shared cache fill: it waits for this process's last write
    v1 = await client.get(f"{V1}/shops/{shop['id']}/products/{product['id']}")
    assert v1.status_code == 200, v1.text

    # a client with no write of its own reads the replica, which really is behind
    replica_reads = reads("replica")
    stale = await client.get(url)
    assert stale.status_code == 404
    assert reads("replica") == replica_reads + 1

    await replica_sql(replica_url, "SELECT pg_wal_replay_resume()")
    await caught_up(postgres_url, replica_url)
    fresh = await client.get(url)
    assert fresh.status_code == 200
    assert reads("replica") == replica_reads + 2


async def test_lag_over_the_threshold_sends_reads_to_the_primary_until_it_recovers(
    postgres_url: str, replica_url: str
) -> None:
    settings = replica_settings(postgres_url, replica_url, replica_max_lag_seconds=0.3)
    async with running_app(settings) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            api = Api(c, resources)
            _, staff, shop = await shop_with_staff(api)
            await caught_up(postgres_url, replica_url)
            await resources.reads.check()
            await replica_sql(replica_url, "SELECT pg_wal_replay_pause()")
            await new_product(c, staff, shop)
            # the lag in seconds grows from the last measurement that found it caught up
            for _ in range(300):
                state = await resources.reads.check()
                if state is not None and not state.up:
                    break
                await asyncio.sleep(0.05)

            health = await c.get("/healthz")
            replica = health.json()["components"]["db_replica"]
            assert replica["status"] == "degraded", replica
            assert replica["lag_bytes"] > 0
            assert replica["lag_seconds"] > 0.3
            assert (REGISTRY.get_sample_value("storefront_db_replica_lag_bytes") or 0) > 0
            assert (REGISTRY.get_sample_value("storefront_db_replica_lag_seconds") or 0) > 0
            assert REGISTRY.get_sample_value("storefront_db_replica_up") == 0

            lagging, primary = fallbacks("lagging"), reads("primary")
            listing = await c.get(f"{V2}/shops/{shop['id']}/products")
            assert listing.status_code == 200
            assert len(listing.json()["_embedded"]["products"]) == 1  # the primary's answer
            assert (fallbacks("lagging"), reads("primary")) == (lagging + 1, primary + 1)

            await replica_sql(replica_url, "SELECT pg_wal_replay_resume()")
            await caught_up(postgres_url, replica_url)
            await resources.reads.check()
            assert resources.reads.state is not None
            assert resources.reads.state.up, resources.reads.state
            replica_reads = reads("replica")
            assert (await c.get(f"{V2}/shops/{shop['id']}/products")).status_code == 200
            assert reads("replica") == replica_reads + 1


def pg_ctlcluster(action: str) -> None:
    subprocess.run(  # noqa: S603 - fixed arguments
        ["pg_ctlcluster", "--skip-systemctl-redirect", *REPLICA_CLUSTER, action],  # noqa: S607
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_stopping_the_replica_under_requests_fails_none_and_reads_come_back(
    postgres_url: str, replica_url: str
) -> None:
    require_or_skip(None if shutil.which("pg_ctlcluster") else "pg_ctlcluster is not installed")
    # measured every 0.2 s, as a running API does (every second by default)
    settings = replica_settings(postgres_url, replica_url, replica_check_interval_seconds=0.2)
    async with running_app(settings) as app:
        resources: Resources = app.state.resources
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            api = Api(c, resources)
            _, staff, shop = await shop_with_staff(api)
            await new_product(c, staff, shop)
            await caught_up(postgres_url, replica_url)
            await resources.reads.check()
            statuses: list[int] = []
            stop = asyncio.Event()

            async def reader(auth: dict[str, str]) -> None:
                while not stop.is_set():
                    r = await c.get(f"{V2}/shops/{shop['id']}/products", headers=auth)
                    statuses.append(r.status_code)
                    await asyncio.sleep(0.005)

            tasks = [asyncio.create_task(reader(a)) for a in ({}, staff.auth, {}, {})]
            try:
                await asyncio.sleep(0.3)
                down = fallbacks("down")
                await asyncio.to_thread(pg_ctlcluster, "stop")
                await asyncio.sleep(1.0)
                health = (await c.get("/healthz")).json()["components"]["db_replica"]
                assert health["status"] == "degraded", health
                assert fallbacks("down") > down
                await asyncio.to_thread(pg_ctlcluster, "start")
                await caught_up(postgres_url, replica_url)
                for _ in range(100):  # the monitor's next measurement brings reads back
                    if resources.reads.state is not None and resources.reads.state.up:
                        break
                    await asyncio.sleep(0.1)
                replica_reads = reads("replica")
                await asyncio.sleep(0.3)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                if await replica_sql(replica_url, "SELECT 1", tolerate_down=True) is None:
                    await asyncio.to_thread(pg_ctlcluster, "start")
            assert reads("replica") > replica_reads  # back on the replica
            assert len(statuses) > 50
            assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


async def test_an_lsn_header_that_is_not_one_asks_for_nothing(
    client: httpx2.AsyncClient, resources: Resources, postgres_url: str, replica_url: str
) -> None:
    api = Api(client, resources)
    _, _, shop = await shop_with_staff(api)
    await caught_up(postgres_url, replica_url)  # an anonymous reader has no LSN to wait for
    for value in ("", "nonsense", "1/2/3", "G/0", uuid.uuid4().hex):
        r = await client.get(f"{V2}/shops/{shop['id']}/products", headers={"Storefront-LSN": value})
        assert r.status_code == 200, (value, r.text)
