"""A drill run's report: bench/reports/drills-<date>-<time>.md and .json."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.drills.prometheus import AlertWatch, transitions
from bench.drills.stats import TARGET_SUCCESS, Summary
from bench.drills.writes import WriteCheck


@dataclass
class DrillResult:
    name: str
    fault: str
    expect: str
    started_at: str
    summary: Summary | None = None
    writes: WriteCheck | None = None
    events: list[tuple[float, str]] = field(default_factory=list)
    fault_at: float | None = None
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None  # why it did not run
    alert: AlertWatch | None = None  # --prometheus: the watched alert after the drill
    held: AlertWatch | None = None  # --prometheus: the drill's held_alert, fault held, healed

    def verdicts(self) -> dict[str, bool]:
        """Each target of the drill: success ratio, recovery, no lost or duplicated write."""
        s, w = self.summary, self.writes
        return {
            "ran": self.skipped is None and not self.errors and s is not None,
            "success >= 99.9%": s is not None
            and s.success_ratio is not None
            and s.success_ratio >= TARGET_SUCCESS,
            "recovered": s is not None and (self.fault_at is None or s.rto_s is not None),
            "0 acknowledged writes lost": w is not None and not w.lost and not w.payments_lost,
            "0 duplicates": w is not None and not w.duplicates and not w.unexpected,
        }

    @property
    def passed(self) -> bool:
        return self.skipped is None and all(self.verdicts().values())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.3f}%"


def _rto(result: DrillResult) -> str:
    s = result.summary
    if s is None or result.fault_at is None:
        return "-"
    return "not recovered" if s.rto_s is None else f"{s.rto_s:.1f} s"


def markdown(results: list[DrillResult], context: dict[str, Any]) -> str:
    lines = [
        f"# Availability drills, {context['started_at']}",
        "",
        f"`{context['command']}` against the loopback cluster ({context['cluster']}); "
        f"open-loop load of {context['rate']:g} requests/s ({context['mix']}), "
        f"{context['customers']} customers. Machine: {context['machine']}.",
        "",
        "| drill | verdict | requests | success | p99 | RTO | acked orders | lost | "
        "duplicates | acked payments | payments lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | skipped: {r.skipped} | | | | | | | | | |")
            continue
        s, w = r.summary, r.writes
        verdict = "PASS" if r.passed else "**FAIL**"
        lines.append(
            f"| {r.name} | {verdict} | {s.requests if s else '-'} | "
            f"{_pct(s.success_ratio if s else None)} | {_ms(s.p99_ms if s else None)} | "
            f"{_rto(r)} | {w.acknowledged if w else '-'} | {len(w.lost) if w else '-'} | "
            f"{w.duplicates if w else '-'} | {w.payments_acknowledged if w else '-'} | "
            f"{len(w.payments_lost) if w else '-'} |"
        )
    lines += [
        "",
        "Success: requests whose last attempt got the expected answer, over every request "
        "scheduled in the drill window (client retries: reads and Idempotency-Key writes; "
        "sign-ins only after a refused connection, a 503 or a 429, which say nothing was "
        "done). Latency from the scheduled time, retries included. RTO: from the fault to "
        "the first success after the failures it caused (0 s: no failed attempt). Lost: "
        "acknowledged (201) orders missing from the database or paid-acknowledged orders "
        "left unpaid, read through the write address after the drill.",
    ]
    for r in results:
        if r.skipped:
            continue
        lines += ["", f"## {r.name}", "", f"Fault: {r.fault}. Expected: {r.expect}.", ""]
        s, w = r.summary, r.writes
        if s is not None:
            kinds = ", ".join(f"{k} {ok}/{n}" for k, (n, ok) in s.by_kind.items())
            lines += [
                f"- window {s.window_s:.0f} s, {s.requests} requests ({kinds}); "
                f"p50 {_ms(s.p50_ms)}, p99 {_ms(s.p99_ms)}, max {_ms(s.max_ms)}",
                f"- retried by the client: {s.retried} requests; failed attempts "
                f"{s.failed_attempts}; RTO {_rto(r)}",
            ]
            if s.failures:
                failed = ", ".join(f"{k}: {n}" for k, n in s.failures.items())
                lines.append(f"- failed requests (last answer): {failed}")
        if w is not None:
            lines.append(
                f"- writes: {w.acknowledged} orders acknowledged, {len(w.lost)} lost, "
                f"{w.duplicates} duplicated, {w.unexpected} unexpected, "
                f"{w.indeterminate_stored} unacknowledged but stored (allowed); "
                f"{w.payments_acknowledged} payments acknowledged, {len(w.payments_lost)} "
                "left their order unpaid"
            )
        if r.held is not None:
            lines += _alert_lines(r.held, "fault held after the window until it fired, then healed")
        if r.alert is not None:
            lines += _alert_lines(r.alert)
        for error in r.errors:
            lines.append(f"- error: {error}")
        if r.events:
            lines += ["", "| t | event |", "|---:|---|"]
            lines += [f"| {t:.1f} s | {text} |" for t, text in r.events]
    return "\n".join(lines) + "\n"


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


def _alert_lines(watch: AlertWatch, how: str = "") -> list[str]:
    """The alert's timeline: what the runner polled, and ALERTS as Prometheus stored it."""
    outcome = (
        "fired and resolved"
        if watch.resolved
        else "fired, not resolved within the watch"
        if watch.fired
        else "did not fire"
    )
    polled = ", ".join(f"{state} {_utc(t)}" for t, state in watch.transitions)
    stored = transitions(watch.series)
    lines = [
        f"- Prometheus ({'--prometheus'}, rules of deploy/monitoring/prometheus/alerts.yml): "
        f"{watch.alert} {outcome}{f' ({how})' if how else ''}; polled /api/v1/alerts (UTC): "
        f"{polled}",
    ]
    if watch.series:
        spans = ", ".join(f"{state} from {_utc(t)}" for t, state in stored)
        lines.append(
            f'- ALERTS{{alertname="{watch.alert}"}} (query_range, step 5 s, '
            f"{len(watch.series)} samples): {spans}; last sample {_utc(watch.series[-1][0])}"
        )
    return lines


def as_json(results: list[DrillResult], context: dict[str, Any]) -> str:
    drills = []
    for r in results:
        item = asdict(r)
        item["passed"] = r.passed
        item["verdicts"] = r.verdicts() if not r.skipped else {}
        drills.append(item)
    return json.dumps({"context": context, "drills": drills}, indent=2) + "\n"


def write(results: list[DrillResult], context: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"drills-{context['stamp']}"
    stem.with_suffix(".md").write_text(markdown(results, context))
    stem.with_suffix(".json").write_text(as_json(results, context))
    return stem.with_suffix(".md")
