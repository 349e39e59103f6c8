"""Background log lines never carry the id of the request that happened to start them
(decision 0114): a request's context ends with the request, and
background work (jobs, retry and probe tasks) starts with a clean one."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from storefront.app import create_app
from storefront.telemetry.logging import configure_logging, current_request
from tests.conftest import _empty_tables, make_settings
from tests.support.factories import V1, Api, shop_with_staff


@pytest.fixture
async def logged(database_url: str) -> AsyncIterator[tuple[FastAPI, io.StringIO]]:
    # jobs in-process, mail off: the order confirmation job only logs that it mails nothing
    settings = make_settings(
        database_url, observability={"log_format": "json", "log_level": "DEBUG"}
    )
    app = create_app(settings)
    buffer = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=buffer)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app, buffer
        await _empty_tables(app.state.resources)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_job_started_by_a_request_does_not_log_that_requests_id(
    logged: tuple[FastAPI, io.StringIO],
) -> None:
    app, buffer = logged
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        api = Api(client)
        _, staff, shop = await shop_with_staff(api)
        product = await api.product(staff, shop, name="Tea", price_cents=900)
        customer = await api.user()
        request_id = f"leak-{uuid.uuid4().hex}"
        r = await client.post(
            f"{V1}/shops/{shop['id']}/orders",
            json=Api.order_body((product, 1)),
            headers={
                **customer.auth,
                "X-Request-ID": request_id,
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        # the request is over: its context is too (httpx runs the app in this very task)
        assert current_request() is None

        deadline = time.monotonic() + 15
        while not [
            line for line in _lines(buffer) if order_id in line["event"] and "mail" in line["event"]
        ]:
            assert time.monotonic() < deadline, "the confirmation job did not log"
            await asyncio.sleep(0.05)

    lines = _lines(buffer)
    with_id = [line for line in lines if line.get("request_id") == request_id]
    assert "request" in [line["event"] for line in with_id]  # its access line (capture works)
    [job_line] = [line for line in lines if order_id in line["event"] and "mail" in line["event"]]
    assert job_line["logger"] == "storefront.orders.tasks"
    assert "request_id" not in job_line  # before the fix: the order request's id
