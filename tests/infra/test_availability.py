"""A dependency's status changes once per outage, and a stale probe cannot flip it back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from storefront.infra.availability import _reset_statuses, dependency
from storefront.web.health import Readiness, ReadinessMonitor


@pytest.fixture(autouse=True)
def _clean_statuses() -> Iterator[None]:
    _reset_statuses()
    yield
    _reset_statuses()


def _said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


def test_a_probe_that_began_before_an_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="storefront.availability")
    redis = dependency("redis")
    probe_began = time.monotonic()  # a readiness check sends PING, Redis answers...
    redis.down("ConnectionError")  # ...then dies, and a request sees it gone
    redis.up(observed_at=probe_began)  # the check's (stale) success is applied last
    assert not redis.is_up
    assert _said(caplog, "redis available again") == 0

    redis.up(observed_at=time.monotonic())  # a probe that began after the outage did
    assert redis.is_up
    assert _said(caplog, "redis available again") == 1


def test_a_probe_that_began_before_a_recovery_does_not_start_a_new_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="storefront.availability")
    broker = dependency("broker")
    broker.down("refused")
    probe_began = time.monotonic()
    broker.up()
    broker.down("refused", observed_at=probe_began)
    assert broker.is_up
    assert _said(caplog, "broker unavailable") == 1


def test_an_observation_without_a_time_is_applied_as_now() -> None:
    redis = dependency("redis")
    redis.down("ConnectionError")
    redis.up()
    assert redis.is_up
    redis.down("ConnectionError")
    assert not redis.is_up


def test_the_readiness_monitor_applies_its_checks_as_of_when_they_began(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="storefront.availability")
    began = time.monotonic()
    dependency("redis").down("ConnectionError")  # seen by a request while the check ran
    result = Readiness(True, None, {"redis": {"status": "up"}})
    ReadinessMonitor._note_dependencies(result, observed_at=began)
    assert not dependency("redis").is_up
    assert _said(caplog, "redis available again") == 0
