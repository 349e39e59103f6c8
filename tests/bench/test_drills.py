"""The drill harness's arithmetic and lost-write check on given records: no cluster, no clock."""

from __future__ import annotations

import pytest
import yaml  # type: ignore[import-untyped]
from bench.drills.load import order_quantities, should_retry
from bench.drills.prometheus import RULES, config, fired_and_resolved, transitions
from bench.drills.report import DrillResult, markdown
from bench.drills.stats import Attempt, Outcome, percentile, summarize, time_to_recover
from bench.drills.writes import Ack, Intent, StoredOrder, check_writes


def ok(start: float, end: float) -> Attempt:
    return Attempt(start, end, True, 200)


def failed(start: float, end: float, status: int | None = 503) -> Attempt:
    return Attempt(start, end, False, status, None if status else "connect")


# -- percentiles, success ratio ----------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) is None


def test_latency_runs_from_the_scheduled_time_through_the_retries() -> None:
    outcome = Outcome("order", 1.0, (failed(1.5, 2.0), ok(3.0, 3.25)))
    assert outcome.ok
    assert outcome.latency == 2.25
    assert outcome.retries == 1


def test_summary_counts_the_last_attempt_of_each_request() -> None:
    outcomes = [
        Outcome("read", 0.0, (ok(0.0, 0.1),)),
        Outcome("read", 0.1, (failed(0.1, 0.2), ok(0.7, 0.8))),  # retried: a success
        Outcome("signin", 0.2, (failed(0.2, 0.3, None),)),  # not retried: a failure
        Outcome("pay", 0.3, (Attempt(0.3, 0.4, False, 409, None, "payment-in-progress"),)),
        Outcome("unfinished", 5.0, ()),  # never answered within the deadlines
    ]
    summary = summarize(outcomes, fault_at=None, window_s=5.0)
    assert (summary.requests, summary.succeeded) == (5, 2)
    assert summary.success_ratio == 0.4
    assert summary.retried == 1
    assert summary.failed_attempts == 3
    assert summary.by_kind == {
        "pay": (1, 0),
        "read": (2, 2),
        "signin": (1, 0),
        "unfinished": (1, 0),
    }
    assert summary.failures == {
        "pay 409 payment-in-progress": 1,
        "signin connect": 1,
        "unfinished no attempt": 1,
    }
    assert summary.rto_s is None  # no fault, no RTO


# -- time to recover ---------------------------------------------------------------------


def test_no_failure_after_the_fault_recovers_at_once() -> None:
    attempts = [failed(1.0, 2.0), ok(9.0, 11.0), ok(12.0, 12.5)]  # the failure came before
    assert time_to_recover(attempts, fault_at=10.0) == 0.0


def test_recovery_is_the_first_success_after_the_faults_failures() -> None:
    attempts = [
        ok(9.0, 9.5),
        failed(10.0, 10.5),
        ok(10.2, 10.6),  # a success in between does not end the outage
        failed(11.0, 13.0),
        failed(14.0, 16.0),
        ok(15.0, 17.5),
        ok(18.0, 18.1),
    ]
    assert time_to_recover(attempts, fault_at=10.0) == pytest.approx(7.5)


def test_a_failure_long_after_the_outage_is_not_part_of_it() -> None:
    attempts = [failed(10.0, 11.0), ok(11.0, 12.0), failed(30.0, 31.0), ok(31.0, 32.0)]
    assert time_to_recover(attempts, fault_at=10.0, quiet=5.0) == pytest.approx(2.0)


def test_a_timeout_in_flight_at_the_fault_counts_from_the_fault() -> None:
    # the first failure ends 10 s after the fault (a timeout), the outage lasts until 23.5
    attempts = [failed(8.0, 18.0, None), failed(12.0, 22.0, None), ok(23.0, 23.5)]
    assert time_to_recover(attempts, fault_at=9.0) == pytest.approx(14.5)


def test_no_success_after_the_failures_is_not_recovered() -> None:
    attempts = [ok(5.0, 6.0), failed(10.0, 11.0), failed(12.0, 13.0)]
    assert time_to_recover(attempts, fault_at=10.0) is None


# -- the lost-write check ----------------------------------------------------------------

INTENTS = [Intent("k1", "c1", 1002), Intent("k2", "c1", 1003), Intent("k3", "c2", 1002)]


def test_every_acknowledged_order_stored_once_passes() -> None:
    stored = [
        StoredOrder("o1", "c1", 1002, "paid"),
        StoredOrder("o2", "c1", 1003, "pending"),
        StoredOrder("o3", "c2", 1002, "pending"),  # k3 never acknowledged: allowed
    ]
    check = check_writes(INTENTS, [Ack("k1", "o1"), Ack("k2", "o2")], stored, ["o1"])
    assert check.ok
    assert (check.acknowledged, check.indeterminate_stored) == (2, 1)
    assert check.lost == []
    assert check.duplicates == 0
    assert check.unexpected == 0


def test_an_acknowledged_order_missing_is_lost() -> None:
    check = check_writes(
        INTENTS, [Ack("k1", "o1"), Ack("k2", "o2")], [StoredOrder("o1", "c1", 1002, "pending")]
    )
    assert check.lost == ["o2"]
    assert not check.ok


def test_an_acknowledged_id_holding_another_order_is_lost() -> None:
    check = check_writes(INTENTS, [Ack("k1", "o1")], [StoredOrder("o1", "c1", 1003, "pending")])
    assert check.lost == ["o1"]


def test_one_intent_stored_twice_is_a_duplicate_acknowledged_or_not() -> None:
    stored = [
        StoredOrder("o1", "c1", 1002, "pending"),
        StoredOrder("o9", "c1", 1002, "pending"),  # a retry that made a second order
        StoredOrder("o3", "c2", 1002, "pending"),
        StoredOrder("o4", "c2", 1002, "pending"),
        StoredOrder("o5", "c2", 1002, "pending"),
    ]
    check = check_writes(INTENTS, [Ack("k1", "o1")], stored)
    assert check.duplicates == 3
    assert check.lost == []
    assert not check.ok


def test_a_stored_order_no_attempt_explains_is_unexpected() -> None:
    stored = [StoredOrder("o1", "c1", 1002, "pending"), StoredOrder("ox", "c3", 5, "pending")]
    check = check_writes(INTENTS, [Ack("k1", "o1")], stored)
    assert check.unexpected == 1
    assert not check.ok


def test_an_acknowledged_payment_must_leave_its_order_paid() -> None:
    stored = [StoredOrder("o1", "c1", 1002, "pending"), StoredOrder("o2", "c1", 1003, "fulfilled")]
    check = check_writes(INTENTS, [Ack("k1", "o1"), Ack("k2", "o2")], stored, ["o1", "o2"])
    assert check.payments_lost == ["o1"]
    assert not check.ok


# -- the client's choices and the report's verdicts --------------------------------------


def test_orders_are_unique_per_customer() -> None:
    totals = {a + 1001 * b for a, b in map(order_quantities, range(10_000))}
    assert len(totals) == 10_000
    assert all(1 <= q <= 100 for pair in map(order_quantities, range(10_000)) for q in pair)
    with pytest.raises(ValueError, match="10,000"):
        order_quantities(10_000)


@pytest.mark.parametrize(
    ("kind", "status", "error", "problem", "retried"),
    [
        ("read", None, "connect", "", True),
        ("read", 503, None, "", True),
        ("order", 429, None, "", True),
        ("order", 409, None, "https://example/problems/idempotency-in-flight", True),
        ("order", 409, None, "https://example/problems/hold-limit-exceeded", False),
        ("order", 422, None, "", False),
        # sign-in (no key): only answers that say nothing was done
        ("signin", 503, None, "", True),
        ("signin", 503, None, "https://example/problems/password-hashing-busy", True),
        ("signin", 429, None, "", True),
        ("signin", None, "connect", "", True),
        ("signin", None, "timeout", "", False),
        ("signin", None, "disconnected", "", False),
        ("signin", 500, None, "", False),
        ("signin", 401, None, "", False),
    ],
)
def test_the_client_retries_only_what_is_safe_to_repeat(
    kind: str, status: int | None, error: str | None, problem: str, retried: bool
) -> None:
    assert should_retry(kind, status, error, problem) is retried


def test_a_drill_fails_on_one_lost_write_whatever_its_success_ratio() -> None:
    outcomes = [Outcome("order", float(t), (ok(t, t + 0.1),)) for t in range(2000)]
    result = DrillResult("api-kill", "fault", "expect", "now", fault_at=10.0)
    result.summary = summarize(outcomes, 10.0, 2000.0)
    result.writes = check_writes(INTENTS, [Ack("k1", "o1")], [])
    verdicts = result.verdicts()
    assert verdicts["success >= 99.9%"]
    assert verdicts["recovered"]
    assert not verdicts["0 acknowledged writes lost"]
    assert not result.passed
    context = {
        "started_at": "x",
        "command": "c",
        "cluster": "c",
        "rate": 20.0,
        "mix": "m",
        "customers": 1,
        "machine": "m",
    }
    assert "| api-kill | **FAIL** | 2000 | 100.000% |" in markdown([result], context)


def test_success_below_the_target_fails() -> None:
    outcomes = [Outcome("read", float(t), (ok(t, t + 0.1),)) for t in range(998)]
    outcomes += [
        Outcome("read", 5.0, (failed(5.0, 5.1),)),
        Outcome("read", 6.0, (failed(6.0, 6.1),)),
    ]
    result = DrillResult("api-kill", "fault", "expect", "now", fault_at=5.0)
    result.summary = summarize(outcomes, 5.0, 1000.0)
    result.writes = check_writes([], [], [])
    assert result.summary.success_ratio == pytest.approx(0.998)
    assert not result.verdicts()["success >= 99.9%"]
    assert not result.passed


def test_an_alert_that_fired_then_went_inactive_resolved() -> None:
    seen = [
        (0.0, "inactive"),
        (5.0, "inactive"),
        (10.0, "pending"),
        (130.0, "firing"),
        (135.0, "firing"),
        (400.0, "inactive"),
    ]
    changes = transitions(seen)
    assert changes == [(0.0, "inactive"), (10.0, "pending"), (130.0, "firing"), (400.0, "inactive")]
    assert fired_and_resolved(changes) == (True, True)


@pytest.mark.parametrize(
    "states",
    [
        ["inactive", "pending", "inactive"],  # pending only: never fired
        ["inactive", "pending", "firing"],  # still firing
        ["firing", "inactive", "firing"],  # fired again after resolving
    ],
)
def test_an_alert_not_back_to_inactive_after_firing_is_not_resolved(states: list[str]) -> None:
    fired, resolved = fired_and_resolved(transitions([(float(i), s) for i, s in enumerate(states)]))
    assert not resolved
    assert fired == ("firing" in states)


def test_prometheus_scrapes_the_cluster_with_the_projects_rules() -> None:
    text = config()
    assert "job_name: storefront" in text  # the alert rules select job="storefront"
    assert str(RULES) in text
    assert RULES.is_file()
    for target in ("127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:9111", "127.0.0.1:9112"):
        assert target in text


def _jobs(text: str) -> dict[str, list[tuple[tuple[str, ...], dict[str, str]]]]:
    parsed = yaml.safe_load(text)
    return {
        job["job_name"]: [
            (tuple(c["targets"]), dict(c.get("labels", {}))) for c in job["static_configs"]
        ]
        for job in parsed["scrape_configs"]
    }


def test_with_the_postgres_tier_the_drills_scrape_it_as_the_clusters_configuration_does() -> None:
    """The PostgreSQL alerts join the exporter's series to Patroni's on (scope, name): the
    drills' Prometheus must label both tiers' targets as cluster.yml does, or those alerts
    never fire in a drill."""
    cluster = _jobs(RULES.with_name("cluster.yml").read_text())
    drills = _jobs(config(postgres=True))
    assert set(drills) == {"storefront", "patroni", "postgres"}
    for job in ("patroni", "postgres"):
        assert drills[job] == cluster[job], job
    assert yaml.safe_load(config(postgres=True))["scrape_configs"][1]["honor_labels"] is True
    # without the tier (the API against this machine's own PostgreSQL) nothing else is scraped
    assert set(_jobs(config())) == {"storefront"}
