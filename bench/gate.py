"""`make bench-gate`: a short, fixed subset of the benchmark, compared with a committed baseline.

    .venv/bin/python -m bench.gate [--write] [--tolerance 0.40] [--baseline bench/baseline.json]

It measures ratios only, never absolute times: each Storefront scenario's throughput divided by
the bare FastAPI endpoint's (the framework's ceiling), measured back to back with wrk on the
same machine at the same connection count. Both servers (one worker each) are up for the whole
run and the measurements are interleaved: in every round each connection count measures the
bare endpoint and every scenario once, in an order that rotates from round to round, and the
ratio of a round is taken from that round's own pair; the gate keeps the median over the rounds.
A burst of other work on a shared machine then lowers one round's pair together (the ratio
holds) or one sample (the median drops it).

Each ratio is compared with bench/baseline.json (written by ``--write`` from a run on the
reference machine): it fails when it is below ``baseline x (1 - tolerance)``, or when a
measurement had errors (socket errors or non-2xx answers). A ratio above the baseline passes.
The measurement parameters are stored with the baseline; a run with other parameters is
refused (exit 2), since the ratios depend on them. Exit status: 0 pass, 1 regression, 2 usage.

Needs what `make bench` needs for its closed loop: PostgreSQL and Redis on loopback
(STOREFRONT_TEST_POSTGRES_URL, STOREFRONT_TEST_REDIS_URL) and wrk (Debian package); not k6.
The reasoning for the subset and the tolerance: docs/decisions/0149.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.run import Server
    from bench.tools import HttpReq

ROOT = Path(__file__).resolve().parent
BASELINE = ROOT / "baseline.json"
REPORTS = ROOT / "reports"
CEILING = "bare"
SCENARIOS = ("cached", "me")  # bench.run's closed-loop keys, each divided by the ceiling's
# how far a ratio may fall below its baseline, by kind (decision 0149): the server's CPU per
# request barely moves with other work on the machine; throughput follows the scheduler
TOLERANCE = {"cpu": 0.40, "req/s": 0.50}
CONFIRM = 1  # on a FAIL, this many more sets of rounds on the same servers, pooled (0149)
PRODUCTS = 200  # bench.run rotates the cached GET over the first 200 products


@dataclass(frozen=True)
class Params:
    """What a baseline is only comparable under: the same subset, measured the same way."""

    scenarios: tuple[str, ...] = SCENARIOS
    connections: tuple[int, ...] = (32,)
    seconds: int = 3
    rounds: int = 5
    workers: int = 1

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Params:
        return cls(
            scenarios=tuple(d["scenarios"]),
            connections=tuple(d["connections"]),
            seconds=int(d["seconds"]),
            rounds=int(d["rounds"]),
            workers=int(d["workers"]),
        )


KINDS = ("req/s", "cpu")


def ratio_key(scenario: str, connections: int, kind: str) -> str:
    return f"{scenario}/{CEILING} @{connections} {kind}"


def kind_of(key: str) -> str:
    return key.rsplit(" ", 1)[1]


@dataclass(frozen=True)
class Sample:
    """One wrk measurement: successful requests per second, the errors beside them, and the
    server's CPU seconds (its process tree) over the requests it answered."""

    round: int
    scenario: str
    connections: int
    rps: float
    errors: int = 0
    requests: int = 0
    server_cpu_s: float = 0.0

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu_s / self.requests if self.requests else float("inf")


@dataclass
class Measured:
    ratios: dict[str, float]
    errors: dict[str, int]  # per ratio key: errors of its scenario's and its ceiling's samples
    samples: list[Sample] = field(default_factory=list)


def ratios_of(samples: list[Sample], params: Params) -> Measured:
    """Per scenario and connection count, the median over the rounds of the round's own
    ratios, both measured in that round: throughput (scenario / ceiling) and CPU per request
    (ceiling / scenario). Both fall when the scenario gets slower."""
    by = {(s.round, s.scenario, s.connections): s for s in samples}
    rounds = max([params.rounds, *(s.round + 1 for s in samples)])
    ratios: dict[str, float] = {}
    errors: dict[str, int] = {}
    for scenario in params.scenarios:
        for c in params.connections:
            rps: list[float] = []
            cpu: list[float] = []
            errs = 0
            for r in range(rounds):
                ceiling, s = by.get((r, CEILING, c)), by.get((r, scenario, c))
                if ceiling is None or s is None:
                    raise ValueError(f"round {r} lacks {scenario} or {CEILING} at {c}")
                errs += ceiling.errors + s.errors
                rps.append(s.rps / ceiling.rps if ceiling.rps > 0 else 0.0)
                cpu.append(ceiling.cpu_per_request / s.cpu_per_request if s.requests else 0.0)
            for kind, values in (("req/s", rps), ("cpu", cpu)):
                ratios[ratio_key(scenario, c, kind)] = statistics.median(values)
                errors[ratio_key(scenario, c, kind)] = errs
    return Measured(ratios, errors, samples)


@dataclass(frozen=True)
class Check:
    key: str
    now: float
    baseline: float | None
    tolerance: float
    errors: int = 0

    @property
    def floor(self) -> float | None:
        return None if self.baseline is None else self.baseline * (1 - self.tolerance)

    @property
    def verdict(self) -> str:
        if self.baseline is None:
            return "FAIL (no baseline)"
        if self.errors:
            return f"FAIL ({self.errors} errors)"
        return "PASS" if self.now >= self.baseline * (1 - self.tolerance) else "FAIL"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


def compare(
    measured: Measured, baseline: dict[str, float], tolerance: dict[str, float]
) -> list[Check]:
    return [
        Check(key, now, baseline.get(key), tolerance[kind_of(key)], measured.errors.get(key, 0))
        for key, now in measured.ratios.items()
    ]


def table(checks: list[Check]) -> str:
    head = f"{'ratio':26} {'now':>7} {'baseline':>9} {'tolerance':>10} {'floor':>7}  result"
    lines = [head, "-" * len(head)]
    for c in checks:
        base = "-" if c.baseline is None else f"{c.baseline:.3f}"
        floor = "-" if c.floor is None else f"{c.floor:.3f}"
        change = "" if not c.baseline else f"  ({100 * (c.now / c.baseline - 1):+.0f}%)"
        lines.append(
            f"{c.key:26} {c.now:7.3f} {base:>9} {f'-{100 * c.tolerance:.0f}%':>10} "
            f"{floor:>7}  {c.verdict}{change}"
        )
    return "\n".join(lines)


class UsageError(Exception):
    pass


def load_baseline(path: Path, params: Params) -> dict[str, float]:
    if not path.exists():
        raise UsageError(f"no baseline at {path}: write one with --write on the reference machine")
    data = json.loads(path.read_text())
    theirs = Params.from_json(data["params"])
    if theirs != params:
        raise UsageError(
            f"{path} was measured with {theirs}, this run uses {params}: ratios are only "
            "comparable under the same parameters (rerun with the baseline's, or --write)"
        )
    return {k: float(v) for k, v in data["ratios"].items()}


def write_baseline(path: Path, measured: Measured, params: Params, meta: dict[str, Any]) -> None:
    data = {
        "params": params.to_json(),
        "ratios": {k: round(v, 4) for k, v in measured.ratios.items()},
        "measured": meta,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def decide(
    measured: Measured,
    params: Params,
    *,
    baseline_path: Path,
    tolerance: dict[str, float],
    write: bool,
    meta: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """The gate's verdict on measured ratios: (exit status, what to print). With ``write``,
    the ratios become the baseline instead (a measurement with errors is not written)."""
    if write:
        bad = {k: n for k, n in measured.errors.items() if n}
        if bad:
            return 1, f"not writing {baseline_path}: measurements had errors {bad}"
        write_baseline(baseline_path, measured, params, meta or {})
        checks = compare(measured, measured.ratios, tolerance)
        return 0, table(checks) + f"\nbaseline written: {baseline_path}"
    try:
        baseline = load_baseline(baseline_path, params)
    except UsageError as e:
        return 2, f"bench-gate: {e}"
    checks = compare(measured, baseline, tolerance)
    failed = [c.key for c in checks if not c.passed]
    text = table(checks)
    if failed:
        text += (
            f"\nbench-gate: FAIL, {len(failed)} of {len(checks)} ratios regressed beyond the "
            f"tolerance: {', '.join(failed)}. On a busy machine rerun before trusting it; "
            "bench/README.md says how to read it."
        )
        return 1, text
    return 0, text + f"\nbench-gate: PASS ({len(checks)} ratios within tolerance)"


# --- the measurement (bench.run's servers, seeding and wrk) ---------------------------------


def log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", flush=True)


def measure(params: Params, confirm: Callable[[Measured], bool]) -> Measured:
    """The servers up, the rounds measured; while ``confirm`` rejects the ratios (a FAIL) and
    CONFIRM allows, as many rounds again on the same servers, the median taken over all."""
    from bench.run import (
        Ctx,
        admin,
        bearer,
        closed_requests,
        create_database,
        seed,
    )
    from bench.tools import run_wrk

    threads = os.cpu_count() or 1
    name, url = asyncio.run(create_database())
    samples: list[Sample] = []
    try:
        ctx = Ctx(url, f"bench:gate-{uuid.uuid4().hex[:8]}:")
        with ctx.start("on", params.workers) as on:
            log("seeding through the API")
            fx = asyncio.run(seed(on.base, PRODUCTS, 0, storm_users=0))
            auth = {"customer": bearer(on.base, fx.customer_email)}
            with ctx.start(CEILING, params.workers) as bare:
                keys = [CEILING, *params.scenarios]
                servers = {k: bare if k == CEILING else on for k in keys}
                reqs = {k: closed_requests(k, fx, auth) for k in keys}
                for k in keys:  # warm-up: caches, pools; not measured
                    run_wrk(
                        "warm", servers[k].base, reqs[k], connections=16, seconds=1,
                        threads=threads, server_pid=None,
                    )  # fmt: skip
                first = 0
                while True:
                    rounds = range(first, first + params.rounds)
                    measure_rounds(rounds, keys, servers, reqs, params, samples, threads)
                    first += params.rounds
                    if confirm(ratios_of(samples, params)) or first > CONFIRM * params.rounds:
                        break
                    log(f"a ratio is below its floor: {params.rounds} more rounds to confirm")
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return ratios_of(samples, params)


def measure_rounds(
    rounds: range,
    keys: list[str],
    servers: dict[str, Server],
    reqs: dict[str, list[HttpReq]],
    params: Params,
    samples: list[Sample],
    threads: int,
) -> None:
    from bench.run import CLOSED
    from bench.tools import run_wrk

    for r in rounds:
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for c in params.connections:
            for k in order:
                res = run_wrk(
                    CLOSED[k][0], servers[k].base, reqs[k], connections=c,
                    seconds=params.seconds, threads=threads, server_pid=servers[k].pid,
                )  # fmt: skip
                samples.append(Sample(r, k, c, res.rps, res.errors, res.requests, res.cpu.server_s))
                log(
                    f"round {r + 1} c={c:<3} {k:8} {res.rps:8.0f} req/s errors {res.errors}  "
                    f"server CPU {1e6 * res.cpu.server_s / max(res.requests, 1):6.0f} µs/request"
                    f"  machine {100 * res.cpu.machine_busy:3.0f}% busy"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = Params()
    parser.add_argument("--write", action="store_true", help="write the baseline from this run")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="relative drop allowed below the baseline for every ratio (default, by kind: "
        + ", ".join(f"{k} {v}" for k, v in TOLERANCE.items())
        + ")",
    )
    parser.add_argument("--connections", type=int, nargs="+", default=list(d.connections))
    parser.add_argument("--seconds", type=int, default=d.seconds, help="per measurement")
    parser.add_argument("--rounds", type=int, default=d.rounds)
    parser.add_argument("--report", type=Path, default=None, help="JSON of the run (default "
                        "bench/reports/gate-<date>-<time>.json)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        parser.error("--tolerance is a share below 1, e.g. 0.40")
    tolerance = TOLERANCE if args.tolerance is None else dict.fromkeys(KINDS, args.tolerance)
    params = Params(connections=tuple(args.connections), seconds=args.seconds, rounds=args.rounds)
    from bench.tools import MissingTool, wrk_binary

    try:
        wrk_binary()
    except MissingTool as e:
        print(f"bench-gate: {e}", file=sys.stderr)
        return 2
    if not args.write:
        try:  # before minutes of measuring
            load_baseline(args.baseline, params)
        except UsageError as e:
            print(f"bench-gate: {e}", file=sys.stderr)
            return 2
    started = time.monotonic()
    load_before = os.getloadavg()

    def confirm(m: Measured) -> bool:
        if args.write:
            return True
        return (
            decide(m, params, baseline_path=args.baseline, tolerance=tolerance, write=False)[0] != 1
        )

    measured = measure(params, confirm)
    meta: dict[str, Any] = {
        "at": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
        "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.monotonic() - started, 1),
    }
    status, text = decide(
        measured,
        params,
        baseline_path=args.baseline,
        tolerance=tolerance,
        write=args.write,
        meta=meta,
    )
    report = args.report or REPORTS / f"gate-{dt.datetime.now(dt.UTC):%Y-%m-%d-%H%M}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {
                **meta,
                "params": params.to_json(),
                "tolerance": tolerance,
                "status": status,
                "ratios": measured.ratios,
                "samples": [asdict(s) for s in measured.samples],
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"\n{len(measured.samples)} measurements in {meta['seconds']} s, load average "
        f"{meta['load_before'][0]} -> {meta['load_after'][0]} on {meta['cores']} cores; "
        f"report {report}\n"
    )
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
