"""A job that ends while the broker connection is down cannot be acknowledged: its message is
redelivered, and the lost acknowledgement is the broker's outage (one status line), not a
"Task exception was never retrieved" traceback (seen in a full run: the connection dropped
between a job's end and its ack)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from storefront.infra.availability import _reset_statuses, dependency
from storefront.jobs.queue import _quiet_broker_loss


async def _fail(exc: BaseException) -> None:
    raise exc


async def _unretrieved_failure(exc: BaseException) -> None:
    """A task that fails and is dropped unawaited, as taskiq's receiver does with an ack."""
    task = asyncio.get_running_loop().create_task(_fail(exc))
    await asyncio.sleep(0.01)
    assert task.done()
    del task
    gc.collect()  # the loop reports an unretrieved exception when the task is collected
    await asyncio.sleep(0.01)


async def test_a_lost_ack_is_the_brokers_outage_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _reset_statuses()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(_quiet_broker_loss)
    try:
        with caplog.at_level(logging.INFO):
            await _unretrieved_failure(ChannelInvalidStateError())
            await _unretrieved_failure(ConnectionResetError())
    finally:
        loop.set_exception_handler(previous)
    assert "never retrieved" not in caplog.text
    assert "Traceback" not in caplog.text
    # reported when the task is collected, after the fact: the connection's own loss said
    # the outage; a late report neither starts one (seen in CI: a second "broker
    # unavailable" just after "available again") nor ends one
    assert dependency("broker").is_up
    assert "broker unavailable" not in caplog.text
    dependency("broker").down("connection lost")
    await _unretrieved_failure(ConnectionResetError())
    assert not dependency("broker").is_up
    _reset_statuses()


async def test_any_other_unretrieved_error_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(_quiet_broker_loss)
    try:
        with caplog.at_level(logging.ERROR):
            await _unretrieved_failure(ValueError("a real bug"))
    finally:
        loop.set_exception_handler(previous)
    assert "never retrieved" in caplog.text
    assert "a real bug" in caplog.text
