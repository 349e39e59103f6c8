"""`make drill`: run the availability drills against the running loopback cluster.

    .venv/bin/python -m bench.drills [--drill NAME ...] [--short] [--prometheus] [--rate 10]
                                     [--list]

Needs `make cluster-up` first. Each drill: a fresh shop and customers (set-up, not measured),
``--before`` seconds of load, the fault, the drill's own settle time of load, then the heal
(outside the window) and the lost-write check through the write address. Every drill whose
scripts are in the tree runs, in order; the report goes to bench/reports/drills-<stamp>.md and
.json. ``--short``: one failover (the PostgreSQL primary when that tier is deployed, else an
API instance) with a shorter window, for CI. Exit status: 0 every drill passed, 1 a drill
failed its targets, 2 usage or the cluster is not up. ``--prometheus``: Prometheus scrapes the
cluster with the project's alert rules, and after each drill with a fault the availability
burn alert's timeline (pending, firing, resolved) goes into the report (``prometheus``); a
drill with a ``held_alert`` (postgres-replica-stop: PatroniNoSynchronousStandby) keeps its
fault after the window until that alert fires, then heals and reports it resolving.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp

from bench.drills.faults import BY_NAME, DRILLS, REPO, Context, Drill, FaultFailed, wait_balanced
from bench.drills.load import API, DEFAULT_RATE, Load, LoadConfig, SetupFailed
from bench.drills.prometheus import (
    WATCHED,
    AlertWatch,
    Prometheus,
    PrometheusFailed,
    fired_and_resolved,
    transitions,
)
from bench.drills.report import DrillResult, write
from bench.drills.stats import summarize
from bench.drills.writes import check_writes, stored_orders


def cluster_dir() -> Path:
    return Path(os.environ.get("STOREFRONT_CLUSTER_DIR") or REPO / ".cluster")


def where(component: str) -> str:
    """Whether the API tier reaches this component's cluster or this machine's own service."""
    env = cluster_dir() / "api" / "storefront.env"
    used = env.is_file() and f"# from {component}" in env.read_text()
    return "its cluster" if used else "this machine's own"


def database_url() -> str:
    """The write address the API tier uses (its env file: the last assignment wins)."""
    env = cluster_dir() / "api" / "storefront.env"
    url = ""
    for line in env.read_text().splitlines():
        if line.startswith("STOREFRONT_DATABASE_URL="):
            url = line.split("=", 1)[1].strip().strip("'\"")
    if not url:
        raise SystemExit(f"no STOREFRONT_DATABASE_URL in {env}: is the cluster up?")
    return url


# after a drill, how long the alert may take: to go pending (errors in the 5-minute window), and
# in all: it fires after 2 minutes pending and resolves once the failover's errors have left
# its 5-minute window (about 5 minutes after the last one, plus the rules' evaluation)
ALERT_START_LIMIT = 150.0
ALERT_WATCH_LIMIT = 900.0


async def watch_alert(
    prom: Prometheus, load: Load, ctx: Context, limit: float = ALERT_WATCH_LIMIT
) -> AlertWatch:
    """After the window: reads at the drill's rate (not counted) while Prometheus's view of the
    watched alert is polled, until it has fired and resolved (or did not start, or the limit)."""
    watch = AlertWatch(WATCHED)
    epoch = time.time() - load.clock()  # unix time of the load's t = 0
    began = load.clock()
    reads: set[asyncio.Task[object]] = set()
    state, seen = "", [(time.time(), "inactive")]
    async with aiohttp.ClientSession() as session:
        load.session = session
        sent = 0
        next_poll = 0.0
        while True:
            now = load.clock()
            if now >= next_poll:
                next_poll = now + 5.0
                try:
                    state = await prom.alert_state(session, WATCHED)
                except (aiohttp.ClientError, TimeoutError, PrometheusFailed) as exc:
                    state = f"unknown ({type(exc).__name__})"
                if state != seen[-1][1]:
                    ctx.mark(f"Prometheus: {WATCHED} {state}")
                seen.append((time.time(), state))
                watch.fired, watch.resolved = fired_and_resolved(transitions(seen))
                if watch.resolved or now - began > limit:
                    break
                if not watch.fired and state == "inactive" and now - began > ALERT_START_LIMIT:
                    break
            customer = load.customers[sent % len(load.customers)]
            path = f"{API}/shops/{load.shop_id}/products/{customer.products[0]}"
            task = asyncio.create_task(load.call("GET", path, ip=customer.ip))
            reads.add(task)
            task.add_done_callback(reads.discard)
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / load.config.rate - load.clock()))
        if reads:
            await asyncio.wait(set(reads), timeout=load.config.timeout + 5)
        watch.transitions = transitions(seen)
        try:
            watch.series = await prom.alert_series(session, WATCHED, epoch, time.time())
        except (aiohttp.ClientError, TimeoutError, PrometheusFailed) as exc:
            ctx.mark(f"Prometheus: ALERTS not read ({type(exc).__name__})")
    ctx.mark(f"Prometheus watch ends ({sent} reads sent, not counted)")
    return watch


HELD_FIRE_LIMIT = 300.0  # a held fault: how long its alert may take to fire
HELD_RESOLVE_LIMIT = 300.0  # and to resolve once healed


async def poll_alert(
    prom: Prometheus,
    alert: str,
    ctx: Context,
    seen: list[tuple[float, str]],
    until: str,
    limit: float,
) -> None:
    """Poll ``alert``'s state every 5 s into ``seen`` until it is ``until`` or ``limit`` s."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                state = await prom.alert_state(session, alert)
            except (aiohttp.ClientError, TimeoutError, PrometheusFailed) as exc:
                state = f"unknown ({type(exc).__name__})"
            if not seen or state != seen[-1][1]:
                ctx.mark(f"Prometheus: {alert} {state}")
            seen.append((time.time(), state))
            if state == until or time.monotonic() > deadline:
                return
            await asyncio.sleep(5.0)


async def held_alert(
    prom: Prometheus, drill: Drill, alert: str, ctx: Context, epoch: float
) -> tuple[AlertWatch, bool]:
    """The fault held until ``alert`` fires, healed, and the alert watched until it resolves.
    Returns the watch and whether the heal was done here."""
    watch = AlertWatch(alert)
    seen: list[tuple[float, str]] = []
    await poll_alert(prom, watch.alert, ctx, seen, "firing", HELD_FIRE_LIMIT)
    healed = False
    if drill.heal is not None:
        await drill.heal(ctx)
        healed = True
    await poll_alert(prom, watch.alert, ctx, seen, "inactive", HELD_RESOLVE_LIMIT)
    watch.transitions = transitions(seen)
    watch.fired, watch.resolved = fired_and_resolved(watch.transitions)
    async with aiohttp.ClientSession() as session:
        try:
            watch.series = await prom.alert_series(session, watch.alert, epoch, time.time())
        except (aiohttp.ClientError, TimeoutError, PrometheusFailed) as exc:
            ctx.mark(f"Prometheus: ALERTS not read ({type(exc).__name__})")
    return watch, healed


async def run_drill(
    drill: Drill,
    config: LoadConfig,
    before: float,
    log: Path,
    prom: Prometheus | None = None,
    alert_watch: float = ALERT_WATCH_LIMIT,
) -> DrillResult:
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    result = DrillResult(drill.name, drill.fault, drill.expect, started)
    print(f"drill {drill.name}: {drill.fault}", flush=True)
    await wait_balanced()
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(config, session)
        try:
            await load.setup()
        except SetupFailed as exc:
            result.errors.append(f"set-up failed: {exc}")
            return result
        ctx = Context(load.clock, log)
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        await asyncio.sleep(before)
        try:
            await drill.inject(ctx)
            await asyncio.sleep(drill.settle)
        except FaultFailed as exc:
            result.errors.append(str(exc))
        ctx.mark("load stops")
        stop.set()
        await running
        ctx.mark(f"last request answered ({len(load.outcomes)} requests)")
    healed = False
    if prom is not None and drill.held_alert is not None and ctx.fault_at is not None:
        epoch = time.time() - load.clock()
        try:
            result.held, healed = await held_alert(prom, drill, drill.held_alert, ctx, epoch)
        except FaultFailed as exc:
            result.errors.append(f"heal: {exc}")
            healed = True
    if drill.heal is not None and not healed:
        try:
            await drill.heal(ctx)
        except FaultFailed as exc:
            result.errors.append(f"heal: {exc}")
    result.events, result.fault_at = ctx.events, ctx.fault_at
    result.summary = summarize(load.outcomes, ctx.fault_at, load.window_s)
    try:
        stored = await stored_orders(database_url(), load.shop_id)
    except (OSError, TimeoutError) as exc:
        result.errors.append(f"lost-write check: the database did not answer: {exc}")
    else:
        result.writes = check_writes(load.intents, load.acks, stored, load.paid_acks)
    if prom is not None and ctx.fault_at is not None:
        result.alert = await watch_alert(prom, load, ctx, alert_watch)
        result.events = ctx.events
    verdicts = result.verdicts()
    print(
        f"drill {drill.name}: {'PASS' if result.passed else 'FAIL'} "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in verdicts.items()),
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--drill", action="append", choices=sorted(BY_NAME), help="only these")
    parser.add_argument("--short", action="store_true", help="one failover, short window (CI)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests/s")
    parser.add_argument("--customers", type=int, default=16)
    parser.add_argument("--before", type=float, default=15.0, help="load before the fault (s)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8100")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "reports")
    parser.add_argument("--list", action="store_true", help="list the drills and exit")
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help=f"run Prometheus with the alert rules; report {WATCHED}'s timeline",
    )
    parser.add_argument(
        "--alert-watch",
        type=float,
        default=ALERT_WATCH_LIMIT,
        help="--prometheus: at most this long (s) after a drill for the alert to resolve",
    )
    args = parser.parse_args(argv)

    if args.list:
        for drill in DRILLS:
            missing = drill.missing()
            state = f"needs {', '.join(missing)}" if missing else "available"
            print(f"{drill.name:24} {state}: {drill.fault}")
        return 0
    chosen = [BY_NAME[name] for name in args.drill] if args.drill else list(DRILLS)
    before = args.before
    if args.short:
        preferred = BY_NAME["postgres-primary-kill"]
        drill = preferred if not preferred.missing() else BY_NAME["api-kill"]
        chosen, before = [replace(drill, settle=min(drill.settle, 30.0))], 10.0

    config = LoadConfig(base_url=args.base_url, rate=args.rate, customers=args.customers)
    now = dt.datetime.now(dt.UTC)
    log = cluster_dir() / "drills.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    context = {
        "started_at": now.strftime("%Y-%m-%d %H:%M UTC"),
        "stamp": now.strftime("%Y%m%d-%H%M"),
        "command": "python -m bench.drills "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "rate": config.rate,
        "mix": ", ".join(f"{kind} {share:.0%}" for kind, share in config.mix),
        "customers": config.customers,
        "before_s": before,
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"load average {os.getloadavg()[0]:.1f} at the start",
        "cluster": ", ".join(f"{c}: {where(c)}" for c in ("postgres", "redis", "rabbitmq")),
    }

    async def everything() -> list[DrillResult]:
        prom = (
            Prometheus(cluster_dir() / "prometheus", postgres=where("postgres") == "its cluster")
            if args.prometheus
            else None
        )
        if prom is not None:
            await prom.start()
            print(f"prometheus: {prom.base} (rules: deploy/monitoring/prometheus/alerts.yml)")
        try:
            return await each(prom)
        finally:
            if prom is not None:
                await prom.stop()

    async def each(prom: Prometheus | None) -> list[DrillResult]:
        results = []
        for drill in chosen:
            missing = drill.missing()
            if missing:
                print(f"drill {drill.name}: skipped (needs {', '.join(missing)})")
                results.append(
                    DrillResult(
                        drill.name,
                        drill.fault,
                        drill.expect,
                        "",
                        skipped=f"needs {', '.join(missing)}",
                    )
                )
                continue
            results.append(await run_drill(drill, config, before, log, prom, args.alert_watch))
        return results

    try:
        results = asyncio.run(everything())
    except (FaultFailed, PrometheusFailed) as exc:
        print(f"drills: {exc}", file=sys.stderr)
        return 2
    path = write(results, context, args.out)
    print(f"report: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    ran = [r for r in results if not r.skipped]
    return 0 if ran and all(r.passed for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
