"""Two installations on one broker keep their jobs apart (decision 0113).

The job queue (RabbitMQ queue and exchange, Redis stream and consumer group) and the Redis
key prefix derive from STOREFRONT_DEPLOYMENT_NAME, so two deployments sharing a RabbitMQ
never consume each other's jobs; production refuses to start without a name."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from pydantic import ValidationError

from storefront.jobs.queue import JobQueue, job, run_worker
from storefront.resources import Resources, open_resources
from storefront.settings import Settings
from tests.conftest import make_settings

RAN: list[tuple[int, int]] = []  # (id of the resources whose worker ran it, the job's number)


@job("tests.deployment_names.record")
async def record(resources: Resources, *, n: int) -> None:
    """Test job: notes which deployment's worker ran it (idempotent: a list entry)."""
    RAN.append((id(resources), n))


def test_queue_and_redis_prefix_derive_from_the_deployment_name(sqlite_url: str) -> None:
    named = make_settings(sqlite_url, deployment_name="shop-eu")
    assert named.jobs.queue == "shop-eu.jobs"
    assert named.redis_prefix == "shop-eu:"
    other = make_settings(sqlite_url, deployment_name="shop-us")
    assert (other.jobs.queue, other.redis_prefix) == ("shop-us.jobs", "shop-us:")
    # explicit names still win (an installation keeping its existing queue)
    kept = make_settings(
        sqlite_url, deployment_name="shop-eu", jobs={"queue": "storefront.jobs"}, redis_prefix="x:"
    )
    assert (kept.jobs.queue, kept.redis_prefix) == ("storefront.jobs", "x:")
    with pytest.raises(ValidationError):
        make_settings(sqlite_url, deployment_name="Not A Name!")


def test_production_refuses_to_start_without_a_deployment_name(sqlite_url: str) -> None:
    secrets: dict[str, Any] = {
        "auth": {"jwt_secret": "x" * 40},
        "privacy": {
            "master_keys": "v1:q3Jx9b1C4vZ0mT6yP2sW8kN5hL7dF1gA3eR0uI9oY2c=",
            "blind_index_key": "Zm9yLXRlc3RzLW9ubHktYmxpbmQtaW5kZXgta2V5IS0=",
        },
    }
    with pytest.raises(ValidationError, match="STOREFRONT_DEPLOYMENT_NAME"):
        Settings(environment="production", database_url=sqlite_url, **secrets)
    named = Settings(
        environment="production", database_url=sqlite_url, deployment_name="shop-prod", **secrets
    )
    assert named.jobs.queue == "shop-prod.jobs"


@pytest.fixture
async def two_deployments(
    sqlite_url: str, rabbitmq_url: str
) -> AsyncIterator[tuple[Settings, Settings]]:
    tag = uuid.uuid4().hex[:8]
    pair = tuple(
        make_settings(
            sqlite_url,
            broker_url=rabbitmq_url,
            deployment_name=f"sf-test-{side}-{tag}",
            jobs={"shutdown_timeout_seconds": 5, "queue_depth_interval_seconds": 0},
        )
        for side in ("a", "b")
    )
    yield pair[0], pair[1]
    import aio_pika

    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for settings in pair:
            queue = settings.jobs.queue
            for name in (queue, f"{queue}.dead_letter"):
                await channel.queue_delete(name)
            await channel.exchange_delete(queue)


async def test_two_deployments_on_one_rabbitmq_do_not_consume_each_others_jobs(
    two_deployments: tuple[Settings, Settings],
) -> None:
    RAN.clear()
    async with AsyncExitStack() as stack:
        resource_sets = [
            await stack.enter_async_context(open_resources(settings, role="worker", jobs=(record,)))
            for settings in two_deployments
        ]
        stops = [asyncio.Event() for _ in resource_sets]
        workers = [
            asyncio.create_task(run_worker(resources.jobs, resources, stop))
            for resources, stop in zip(resource_sets, stops, strict=True)
        ]
        try:
            queues: list[JobQueue] = [r.jobs for r in resource_sets]
            deadline = time.monotonic() + 30
            while not all(q.connected for q in queues):
                assert time.monotonic() < deadline, "workers did not connect"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # both consumers subscribed
            a, b = (id(resources) for resources in resource_sets)
            for n in range(10):
                await queues[0].enqueue(record, n=n)  # deployment a's jobs only
            while len(RAN) < 10 and time.monotonic() < deadline + 30:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # anything b would have taken has run by now
            assert sorted(RAN) == [(a, n) for n in range(10)]
            assert not [entry for entry in RAN if entry[0] == b]
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
