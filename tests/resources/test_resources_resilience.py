"""A dependency that is away is not a bug (decisions 0110, 0111).

`storefront serve` against an unmigrated or missing database logs one line saying so (not a
traceback a second from every background loop), answers 503 with Retry-After, and recovers
once the database is migrated. An API whose broker is unreachable starts, is ready, shows the
broker "degraded" in /healthz, keeps deferred jobs in the outbox and relays them once the
broker is reachable."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from storefront.infra.availability import _reset_statuses
from storefront.jobs.outbox import OutboxEntry
from storefront.kit.db import snapshot_session
from storefront.resources import Resources
from tests.conftest import POSTGRES_ADMIN_URL, _pg_admin, make_settings, require_or_skip
from tests.jobs.test_jobs import (
    Broker,
    _broker_messages,
    _fast_outbox,
    _make_world,
    _serving,
)
from tests.support.servers import CLI, TcpProxy, cli_env, free_port, run_cli, stop

SIGN_IN = {"email": "nobody@example.com", "password": "not-the-password-at-all"}


class Served:
    """`storefront serve` with its output (JSON log lines) going to a file we can read
    while it runs."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [*CLI, "serve"],
            env={
                **env,
                "STOREFRONT_PORT": str(self.port),
                "STOREFRONT_OBSERVABILITY__LOG_FORMAT": "json",
                "STOREFRONT_OBSERVABILITY__READINESS_INTERVAL_SECONDS": "0.5",
                "STOREFRONT_JOBS__OUTBOX_POLL_SECONDS": "0.2",  # a flood would show quickly
                # the schedulers too (unpaid-order expiry, GDPR retention): every second
                "STOREFRONT_ORDERS__EXPIRY_INTERVAL_SECONDS": "1",
                "STOREFRONT_PRIVACY__RETENTION_INTERVAL_SECONDS": "1",
            },
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in self.lines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # the banner `serve` prints before logging is set up
        return found

    def wait_live(self, within: float = 120) -> None:
        # as generous as tests/support/servers.py::wait_ready: importing the app alone took
        # 38 s of wall time (10 s of CPU) on the two-core host at a load average of 12
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "\n".join(self.lines())
            try:
                if httpx2.get(f"{self.base}/livez", timeout=2).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("not live")

    def stop(self) -> None:
        stop(self.proc)
        self._out.close()


def _wait_for(check: Any, what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.2)


def _messages(served: Served, text: str) -> list[dict[str, Any]]:
    return [r for r in served.records() if text in str(r.get("event", ""))]


def _assert_unavailable(served: Served) -> None:
    r = httpx2.post(f"{served.base}/api/v1/auth/login", json=SIGN_IN, timeout=10)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["type"] == "/problems/unavailable"
    assert "database" in r.json()["detail"]


def _serve_until_recovered(
    served: Served, make_it_right: Any, env: dict[str, str], tmp_path: Path
) -> None:
    try:
        served.wait_live()
        _assert_unavailable(served)
        time.sleep(5)  # background loops (outbox relay every 0.2 s, readiness every 0.5 s)
        _assert_unavailable(served)
        lines = served.lines()
        # bounded: start-up lines, one "unavailable", the two access lines; before the fix
        # the outbox relay alone logged a traceback five times a second
        assert len(lines) < 25, "\n".join(lines)
        records = served.records()
        assert not [r for r in records if "exception" in r], "\n".join(lines)
        [down] = _messages(served, "database unavailable")
        assert "retrying with backoff" in down["event"]
        assert httpx2.get(f"{served.base}/readyz", timeout=10).status_code == 503

        make_it_right()
        _wait_for(
            lambda: httpx2.get(f"{served.base}/readyz", timeout=10).status_code == 200,
            "ready once the database is migrated",
        )
        r = httpx2.post(f"{served.base}/api/v1/auth/login", json=SIGN_IN, timeout=10)
        assert r.status_code == 401, r.text  # answered by the database again
        _wait_for(lambda: _messages(served, "database available again"), "recovery logged")
        time.sleep(1.0)
        assert len(_messages(served, "database unavailable")) == 1
        assert len(_messages(served, "database available again")) == 1
        assert not [r for r in served.records() if "exception" in r]
    finally:
        served.stop()


def test_serve_on_an_unmigrated_database_logs_once_answers_503_and_recovers(
    empty_database: str, tmp_path: Path
) -> None:
    env = cli_env(empty_database)
    served = Served(env, tmp_path / "serve.log")
    _serve_until_recovered(served, lambda: run_cli(["migrate"], env), env, tmp_path)


@pytest.mark.postgres
def test_serve_on_a_missing_postgres_database_recovers_once_it_exists(
    postgres_unavailable: str | None, tmp_path: Path
) -> None:
    require_or_skip(postgres_unavailable)
    name = f"storefront_missing_{uuid.uuid4().hex[:10]}"
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    env = cli_env(url)
    served = Served(env, tmp_path / "serve.log")

    def create_and_migrate() -> None:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        run_cli(["migrate"], env)

    try:
        _serve_until_recovered(served, create_and_migrate, env, tmp_path)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- item 17: the broker away at start ----------------------------------------------------


@pytest.fixture
async def rabbit_queue(rabbitmq_url: str) -> AsyncIterator[Broker]:
    queue = f"sf-test-{uuid.uuid4().hex[:12]}"
    yield Broker(rabbitmq_url, queue)
    import aio_pika

    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for name in (queue, f"{queue}.dead_letter"):
            await channel.queue_delete(name)
        await channel.exchange_delete(queue)


async def _outbox(resources: Resources) -> list[OutboxEntry]:
    async with snapshot_session(resources.sessionmaker) as session:
        return list((await session.scalars(select(OutboxEntry))).all())


async def test_the_api_starts_without_its_broker_holds_jobs_and_relays_them_later(
    database_url: str, rabbit_queue: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _reset_statuses()  # this process's earlier tests may have left the broker "down"

    def text_of(record: logging.LogRecord) -> str:
        try:
            return record.getMessage()
        except Exception:  # noqa: BLE001 - a library record whose arguments do not format
            return str(record.msg)

    def said(text: str) -> int:
        return sum(text in text_of(record) for record in caplog.records)

    assert rabbit_queue.url is not None
    target = urlsplit(rabbit_queue.url)
    assert target.hostname is not None
    assert target.port is not None
    proxy = TcpProxy(target.hostname, target.port)  # not listening yet: the broker is away
    proxied = rabbit_queue.url.replace(target.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
    settings = make_settings(
        database_url,
        broker_url=proxied,
        jobs=_fast_outbox(rabbit_queue.queue, outbox_lease_seconds=2),
    )
    try:
        async with _serving(settings) as (resources, api):  # before the fix: start-up failed
            ready = await api.client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert "broker" not in ready.json()["checks"]
            health = await api.client.get("/healthz")
            broker = health.json()["components"]["broker"]
            assert broker["status"] == "degraded"
            assert "outbox" in broker["detail"]

            world = await _make_world(api)
            order = await api.order(world.customer, world.shop, (world.product, 1))  # 201
            [row] = await _outbox(resources)
            assert row.kwargs == {"shop_id": world.shop["id"], "order_id": order["id"]}
            await asyncio.sleep(3)  # past the row's lease: the relay leaves it alone
            assert [r.id for r in await _outbox(resources)] == [row.id]
            assert resources.jobs is not None
            assert not resources.jobs.connected

            await proxy.up()
            deadline = time.monotonic() + 30
            while await _outbox(resources):
                assert time.monotonic() < deadline, "the outbox was not relayed"
                await asyncio.sleep(0.1)
            assert resources.jobs.connected
            [message] = await _broker_messages(rabbit_queue)
            assert message["task_name"] == "orders.send_confirmation"
            assert message["labels"]["outbox_id"] == str(row.id)
            health = await api.client.get("/healthz")
            assert health.json()["components"]["broker"]["status"] == "up"

            # once at start, once connected: not a line per connection attempt
            assert said("broker unavailable") == 1
            assert said("broker available again") == 1
            assert not [r for r in caplog.records if r.name.startswith(("aiormq", "aio_pika"))]
            # the connection drops and aio-pika reconnects every 5 s: still one line each way
            await proxy.down()
            await asyncio.sleep(12)
            assert said("broker unavailable") == 2
            assert not [r for r in caplog.records if "Reconnecting" in text_of(r)]
            await proxy.up()
            deadline = time.monotonic() + 30
            while said("broker available again") < 2:
                assert time.monotonic() < deadline, "the reconnection was not noticed"
                await asyncio.sleep(0.1)
    finally:
        await proxy.down()
