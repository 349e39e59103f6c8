"""The arithmetic of a drill's report, on recorded outcomes only (no clock, no I/O).

A *request* is one operation of the load (a catalog read, a sign-in, an order, a payment) as
the client sees it: it may take several *attempts* when the client retries (reads, and writes
with an Idempotency-Key, on a connection error, a timeout, a 5xx, a 429 or an
``idempotency-in-flight`` 409: what a real client does). A request succeeds when its last
attempt got the expected status; its latency runs from the moment the open loop *scheduled*
it (not when it was sent: no coordinated omission) to its last answer.

Time to recover (RTO): from the fault to the first success after the failures the fault
caused. The failures that belong to the fault are the failed attempts sent from the fault on
(or in flight at the fault), each sent less than ``quiet`` seconds after the previous one (the
first less than ``quiet`` after the fault); the recovery is the first success of an attempt
sent after the last of them. None when no success follows (the system did not recover within
the drill).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

QUIET_SECONDS = 5.0  # a failure-free stretch this long ends the fault's failures
TARGET_SUCCESS = 0.999


@dataclass(frozen=True, slots=True)
class Attempt:
    start: float  # seconds since the load began
    end: float
    ok: bool
    status: int | None = None  # None: no HTTP answer (see error)
    error: str | None = None  # "connect", "timeout", "disconnected", ...
    problem: str | None = None  # the problem type's last segment of an unexpected answer


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # read, signin, order, pay
    scheduled: float  # when the open loop meant to send it (seconds since the load began)
    attempts: tuple[Attempt, ...]

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok

    @property
    def end(self) -> float:
        return self.attempts[-1].end if self.attempts else self.scheduled

    @property
    def latency(self) -> float:
        return self.end - self.scheduled

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100): a value that was observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def success_ratio(outcomes: Sequence[Outcome]) -> float | None:
    if not outcomes:
        return None
    return sum(1 for o in outcomes if o.ok) / len(outcomes)


def time_to_recover(
    attempts: Iterable[Attempt], fault_at: float, quiet: float = QUIET_SECONDS
) -> float | None:
    """Seconds from ``fault_at`` to the first successful answer after the fault's failures
    (0.0 when the fault caused none); None when no success follows them. A failed attempt
    counts from when it was sent, or from the fault when it was in flight then (a timeout
    ends seconds after the fault that caused it)."""
    ordered = list(attempts)
    failures = sorted(max(a.start, fault_at) for a in ordered if not a.ok and a.end >= fault_at)
    last_failure: float | None = None
    for sent in failures:
        if sent - (fault_at if last_failure is None else last_failure) >= quiet:
            break
        last_failure = sent
    if last_failure is None:
        return 0.0
    recovered = [a.end for a in ordered if a.ok and a.start >= last_failure]
    return min(recovered) - fault_at if recovered else None


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    succeeded: int
    success_ratio: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    retried: int  # requests that needed more than one attempt
    by_kind: dict[str, tuple[int, int]]  # kind -> (requests, succeeded)
    failures: dict[str, int]  # "kind status-or-error" of each failed request's last attempt
    failed_attempts: int = 0
    rto_s: float | None = None
    window_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def summarize(outcomes: Sequence[Outcome], fault_at: float | None, window_s: float) -> Summary:
    latencies = [o.latency * 1000 for o in outcomes]
    by_kind: dict[str, tuple[int, int]] = {}
    failures: dict[str, int] = {}
    for o in outcomes:
        total, ok = by_kind.get(o.kind, (0, 0))
        by_kind[o.kind] = (total + 1, ok + (1 if o.ok else 0))
        if not o.ok:
            last = o.attempts[-1] if o.attempts else None
            if last is None:
                what = "no attempt"
            else:
                what = last.error or " ".join(filter(None, (str(last.status), last.problem)))
            failures[f"{o.kind} {what}"] = failures.get(f"{o.kind} {what}", 0) + 1
    attempts = [a for o in outcomes for a in o.attempts]
    return Summary(
        requests=len(outcomes),
        succeeded=sum(1 for o in outcomes if o.ok),
        success_ratio=success_ratio(outcomes),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies) if latencies else None,
        retried=sum(1 for o in outcomes if o.retries),
        by_kind=dict(sorted(by_kind.items())),
        failures=dict(sorted(failures.items())),
        failed_attempts=sum(1 for a in attempts if not a.ok),
        rto_s=None if fault_at is None else time_to_recover(attempts, fault_at),
        window_s=window_s,
    )
