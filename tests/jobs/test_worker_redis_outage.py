"""A `storefront worker` on the Redis stream broker keeps consuming across a dropped connection
(``CLIENT KILL``) and across a short Redis outage (the server stopped, then started again
empty): it backs off, logs "redis unavailable" once and "redis available again" once per
outage, and runs the jobs enqueued afterwards (decision 0130). It uses a redis-server of its
own: killing the shared server's connections would cut other tests' workers.

On RabbitMQ, aio-pika's robust connection already reconnects: a worker whose connection is
cut (a proxy in between) goes on consuming once the broker is reachable again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis as SyncRedis

from tests.conftest import make_settings
from tests.jobs.test_jobs import _make_world, _serving, _start_worker
from tests.support.mail import Inbox, SmtpServer
from tests.support.servers import OwnRedis, TcpProxy


async def _still_running_after(worker: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.poll() is None, (worker.stdout.read() if worker.stdout else b"").decode(
            errors="replace"
        )
        await asyncio.sleep(0.1)


async def test_worker_survives_a_redis_connection_drop_and_a_short_outage(
    sqlite_url: str, own_redis: OwnRedis
) -> None:
    inbox = Inbox()
    with SmtpServer(inbox) as smtp:
        settings = make_settings(
            sqlite_url,
            smtp=smtp.settings,
            broker_url=own_redis.url,
            jobs={"queue": "sf-outage-jobs", "retry_base_delay_seconds": 0.2},
        )
        worker = _start_worker(settings, smtp)
        output = b""
        try:
            async with _serving(settings) as (_resources, api):
                world = await _make_world(api)
                await api.order(world.customer, world.shop, (world.product, 1))
                await inbox.wait_for(1, within=45)

                # every client connection dropped (a failover, a proxy restart...)
                killer = SyncRedis(port=own_redis.port)
                try:
                    assert killer.client_kill_filter(_type="normal") >= 1
                finally:
                    killer.close()
                await _still_running_after(worker, 2)
                await api.order(world.customer, world.shop, (world.product, 1))
                await inbox.wait_for(2, within=30)

                # Redis away for a few seconds, then back empty (no persistence)
                own_redis.stop()
                await _still_running_after(worker, 2.5)
                own_redis.start()
                await _still_running_after(worker, 1)
                await api.order(world.customer, world.shop, (world.product, 1))
                await inbox.wait_for(3, within=45)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                output, _ = worker.communicate()
                pytest.fail(f"worker ignored SIGTERM:\n{output.decode(errors='replace')}")
    text = output.decode(errors="replace")
    assert worker.returncode == 0, text
    assert text.count("redis unavailable") == 2, text
    assert text.count("redis available again") == 2, text


async def test_worker_survives_a_rabbitmq_connection_drop(
    sqlite_url: str, rabbitmq_url: str
) -> None:
    inbox = Inbox()
    queue = f"sf-test-{uuid.uuid4().hex[:12]}"
    target = urlsplit(rabbitmq_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        netloc = target.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{proxy.port}"
        proxied = urlunsplit(
            target._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )
        with SmtpServer(inbox) as smtp:
            jobs = {"queue": queue, "retry_base_delay_seconds": 0.2}
            settings = make_settings(
                sqlite_url, smtp=smtp.settings, broker_url=rabbitmq_url, jobs=jobs
            )
            worker_settings = make_settings(
                sqlite_url, smtp=smtp.settings, broker_url=proxied, jobs=jobs
            )
            worker = _start_worker(worker_settings, smtp)
            output = b""
            try:
                async with _serving(settings) as (_resources, api):
                    world = await _make_world(api)
                    await api.order(world.customer, world.shop, (world.product, 1))
                    await inbox.wait_for(1, within=45)
                    await proxy.down()  # the worker's connection is cut; no new one for 2 s
                    await _still_running_after(worker, 2)
                    await proxy.up()
                    await api.order(world.customer, world.shop, (world.product, 1))
                    await inbox.wait_for(2, within=45)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    output, _ = worker.communicate()
                    pytest.fail(f"worker ignored SIGTERM:\n{output.decode(errors='replace')}")
                import aio_pika

                connection = await aio_pika.connect(rabbitmq_url)
                async with connection:
                    channel = await connection.channel()
                    for name in (queue, f"{queue}.dead_letter"):
                        await channel.queue_delete(name)
                    await channel.exchange_delete(queue)
    text = output.decode(errors="replace")
    assert worker.returncode == 0, text
    # a slow first connect on a loaded machine is an outage of its own: count from the start
    # of consumption, through the shutdown (which must log no outage)
    consuming = text[text.index("worker consuming") :]
    assert consuming.count("broker unavailable") == 1, text
    assert consuming.count("broker available again") == 1, text
    # the loss is one status line each way, not the client libraries' tracebacks
    assert "Traceback" not in text, text
    assert "reader exited abnormally" not in text, text


async def test_a_connect_cut_short_closes_the_connection_it_opened(
    rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose first connect timed out half-way (write connection open, queues not
    declared) must not keep that robust connection beside the next attempt's: it reconnected
    on its own and logged outages nobody had (seen in CI as extra "broker unavailable")."""
    from storefront.jobs.queue import OutboxConfig, build_job_queue

    queue = build_job_queue(
        rabbitmq_url,
        queue=f"sf-test-{uuid.uuid4().hex[:12]}",
        max_retries=0,
        base_delay=0.1,
        max_delay=0.1,
        concurrency=1,
        shutdown_timeout=1,
        outbox=OutboxConfig(send_timeout_seconds=1.0),
    )

    async def hang(*_args: object, **_kwargs: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(queue.broker, "_declare_exchanges", hang)
    with pytest.raises(TimeoutError):
        await queue._connect()
    broker = queue.broker
    assert getattr(broker, "write_conn", "absent") is None
    assert getattr(broker, "write_channel", "absent") is None
    assert not queue.connected
