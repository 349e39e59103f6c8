"""open_resources is the one owner of the process's resources: it closes, in reverse order,
everything it opened, when the work inside is done and when opening fails half-way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from storefront.cache import ResponseCache
from storefront.infra.outbound import OutboundClient
from storefront.infra.ratelimit import DistributedRateLimiter
from storefront.jobs.queue import JobQueue, job
from storefront.kit.master_keys import MasterKeyError
from storefront.resources import Resources, open_resources
from tests.conftest import make_settings

Closed = list[str]


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Closed:
    """The close calls of every resource kind, in the order they happen."""
    calls: Closed = []

    def spy(cls: type, method: str, label: str) -> None:
        original: Callable[..., Any] = getattr(cls, method)

        async def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
            # the response cache reads generations over a client of its own (one connection
            # of the process's pool): told apart from the process's Redis client
            reader = label == "redis" and getattr(self, "single_connection_client", False)
            calls.append("cache reader" if reader else label)
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, recording)

    spy(AsyncEngine, "dispose", "engine")
    spy(Redis, "aclose", "redis")
    spy(OutboundClient, "aclose", "http")
    spy(ResponseCache, "aclose", "cache")
    spy(DistributedRateLimiter, "aclose", "rate_limiter")
    spy(JobQueue, "shutdown", "jobs")
    return calls


@job("tests.open_resources.noop")
async def _noop(resources: Resources) -> None:
    """Test job: does nothing (idempotent)."""


async def test_closes_everything_in_reverse_order(
    sqlite_url: str, redis_url: str, closed: Closed
) -> None:
    settings = make_settings(sqlite_url, redis_url=redis_url)
    async with open_resources(settings, role="api", jobs=(_noop,)) as resources:
        assert resources.jobs.connected  # the API's queue is started (in process)
        assert set(resources.jobs.jobs) == {"tests.open_resources.noop"}
        assert resources.redis is not None
        assert resources.rate_limiter.backend == "redis"
        assert closed == []
    # the queue disposes its outbox relay's own small engine as it shuts down
    assert closed == [
        "jobs",
        "engine",
        "rate_limiter",
        "cache",
        "cache reader",
        "http",
        "redis",
        "engine",
    ]


async def test_a_command_line_task_starts_no_job_queue(sqlite_url: str, closed: Closed) -> None:
    async with open_resources(make_settings(sqlite_url), role="cli") as resources:
        assert not resources.jobs.connected
        assert resources.redis is None  # the embedded default
    assert closed == ["rate_limiter", "cache", "http", "engine"]


async def test_bad_master_keys_close_what_was_already_open(
    sqlite_url: str, redis_url: str, tmp_path: Path, closed: Closed
) -> None:
    settings = make_settings(
        sqlite_url,
        redis_url=redis_url,
        privacy={"master_key_file": str(tmp_path / "missing-keys.json")},
    )
    with pytest.raises(MasterKeyError):
        async with open_resources(settings, role="worker"):
            pytest.fail("opened with unusable master keys")
    assert closed == ["cache", "cache reader", "http", "redis", "engine"]


async def test_a_failing_job_queue_start_closes_everything(
    sqlite_url: str, redis_url: str, closed: Closed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: JobQueue, *args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker refused")

    monkeypatch.setattr(JobQueue, "startup", refuse)
    settings = make_settings(sqlite_url, redis_url=redis_url)
    with pytest.raises(ConnectionRefusedError):
        async with open_resources(settings, role="api"):
            pytest.fail("opened without a job queue")
    assert closed == ["jobs", "rate_limiter", "cache", "cache reader", "http", "redis", "engine"]


async def test_resources_are_read_only(sqlite_url: str) -> None:
    async with open_resources(make_settings(sqlite_url), role="cli") as resources:
        with pytest.raises(AttributeError):
            resources.redis = None  # type: ignore[misc]
        assert not resources.draining.active
        resources.draining.begin()  # what changes at run time has an object of its own
        assert resources.draining.active
