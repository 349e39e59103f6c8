"""The report of `make bench`: bench/reports/<date>-<time>.md and its chart (PNG, two panels)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.tools import OpenResult, WrkResult

if TYPE_CHECKING:
    from bench.run import Results

P99_BUDGET_MS = 100.0
NO_COLLAPSE = 0.80  # throughput at the largest connection count / the sweep's peak


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "**FAIL**")


def at(curve: list[WrkResult], connections: int) -> WrkResult | None:
    return next((r for r in curve if r.connections == connections), None)


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def tail_factor(r: WrkResult) -> str:
    """p99 over the mean latency of a closed loop (Little's law: connections / throughput)."""
    done = r.requests / r.duration_s if r.duration_s else 0.0
    return f"x{r.p99_ms / (1000 * r.connections / done):.1f}" if done else "-"


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def cpu_share(seconds: float, wall: float) -> str:
    """CPU seconds over a wall interval, as a share of one core."""
    return f"{100 * seconds / wall:.0f}%" if wall else "n/a"


def shape(workers: int, cores: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}" + (
        " (production shape)" if workers == cores and workers > 1 else ""
    )


def ratio_target(
    res: Results, key: str, ceiling: str, floor: float, points: tuple[int, ...]
) -> list[tuple[str, bool | None]]:
    """One row per worker count: key / ceiling at each of the points, PASS if all hold."""
    rows: list[tuple[str, bool | None]] = []
    for w in res.args.workers:
        curve, base = res.closed.get((key, w)), res.closed.get((ceiling, w))
        if not curve or not base:
            rows.append((f"{shape(w, res.cores)}: not measured", None))
            continue
        parts, ok = [], True
        for c in points:
            r, b = at(curve, c), at(base, c)
            if r is None or b is None:
                parts.append(f"{c} conns not in the sweep")
                ok = False
                continue
            x = ratio(r.rps, b.rps)
            ok = ok and x >= floor and r.errors == 0 and r.requests > 0
            parts.append(f"{x:.2f}x at {c} ({r.rps:,.0f} vs {b.rps:,.0f} req/s)")
        rows.append((f"{shape(w, res.cores)}: " + "; ".join(parts), ok))
    return rows


def no_collapse(curve: list[WrkResult]) -> tuple[float, WrkResult, WrkResult]:
    """Throughput at the largest connection count over the sweep's peak (0 if nothing was
    answered at all: a server that stalls has collapsed)."""
    peak = max(curve, key=lambda r: r.rps)
    last = max(curve, key=lambda r: r.connections)
    return (ratio(last.rps, peak.rps) if peak.rps else 0.0), peak, last


def sign_in_summary(r: WrkResult) -> str:
    """What became of the sign-ins: answered, refused (and how many said when to retry), how
    fast."""
    ok = sum(v for k, v in r.statuses.items() if 200 <= k < 300)
    refused = sum(v for k, v in r.statuses.items() if k in (429, 503))
    other = sum(v for k, v in r.statuses.items() if k >= 400 and k not in (429, 503))
    socket = max(0, r.errors - refused - other)
    return (
        f"{ok:,} signed in, {refused:,} refused ({r.retry_after:,} with Retry-After), "
        f"{other:,} other errors, {socket:,} socket errors/timeouts; "
        f"p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms"
    )


def targets(res: Results) -> list[str]:
    from bench.run import CLOSED

    lines = ["| target | measured | result |", "|---|---|---|"]

    def add(target: str, rows: list[tuple[str, bool | None]]) -> None:
        for i, (measured, ok) in enumerate(rows):
            lines.append(f"| {target if i == 0 else ''} | {measured} | {verdict(ok)} |")

    add(
        "cached product GET >= 0.40x bare FastAPI at 64 and at 256 connections",
        ratio_target(res, "cached", "bare", 0.40, (64, 256)),
    )
    collapse_rows: list[tuple[str, bool | None]] = []
    for w in res.args.workers:
        fails, n = [], 0
        for key, (title, _) in CLOSED.items():
            curve = res.closed.get((key, w))
            if not curve:
                continue
            n += 1
            x, _, _ = no_collapse(curve)
            if x < NO_COLLAPSE:
                fails.append(f"{title} {x:.0%}")
        if n:
            detail = "; below: " + ", ".join(fails) if fails else ""
            held = f"{shape(w, res.cores)}: {n - len(fails)} of {n} scenarios hold{detail}"
            collapse_rows.append((held, not fails))
    add(
        f"every scenario at {max(res.args.connections)} connections >= 80% of its own peak",
        collapse_rows or [("", None)],
    )
    add(
        "authenticated one-row read >= 0.50x bare asyncpg PK endpoint (64 and 256 connections)",
        ratio_target(res, "me", "pk", 0.50, (64, 256)),
    )
    add(
        "uncached product GET >= 0.60x bare asyncpg PK endpoint (64 and 256 connections)",
        ratio_target(res, "uncached", "pk", 0.60, (64, 256)),
    )
    creation = res.order_cpu.get("order creation")
    staff = res.order_cpu.get("order listing (staff)")
    add(
        "order creation <= 5 ms CPU, staff order listing <= 2.5 ms CPU (bench/hot_path_cpu.py)",
        [
            (
                f"{creation:.1f} ms and {staff:.1f} ms"
                if creation is not None and staff is not None
                else "not measured",
                None if creation is None or staff is None else creation <= 5.0 and staff <= 2.5,
            )
        ],
    )
    if res.mixed_curve:
        top = res.mixed_curve[-1]
        mixed_ok: bool | None = res.sustained > 0 and top.p99_ms < P99_BUDGET_MS and top.errors == 0
        sustains = (
            f"naive baseline sustains {res.sustained:.0f}/s"
            if res.sustained
            else f"the naive baseline sustains none of the rates tried (p99 over "
            f"{P99_BUDGET_MS:.0f} ms already at {res.naive_curve[0].offered_rate:.0f}/s), so "
            "the steps start from that rate"
        )
        measured = (
            f"{sustains}; 10x = {top.offered_rate:.0f}/s at "
            f"{shape(res.open_workers, res.cores)}: p99 {top.p99_ms:.1f} ms, "
            f"{top.failed} failed, {top.dropped} dropped"
        )
    else:
        mixed_ok, measured = None, "not measured"
    add(
        "mixed 80/15/5 at 10x the naive baseline's sustainable rate, open loop, production "
        "shape: p99 < 100 ms, no errors",
        [(measured, mixed_ok)],
    )
    storm_rows: list[tuple[str, bool | None]] = []
    for s in res.storms:
        ok = (
            s.unloaded.rps > 0
            and s.loaded.rps >= 0.5 * s.unloaded.rps
            and s.loaded.p99_ms < 50
            and s.loaded.errors == 0
        )
        storm_rows.append(
            (
                f"{shape(s.workers, res.cores)}: cached p99 {s.loaded.p99_ms:.1f} ms, "
                f"{s.loaded.rps:,.0f} req/s = {pct(s.loaded.rps, s.unloaded.rps)} of unloaded "
                f"({s.unloaded.rps:,.0f}); sign-ins: {sign_in_summary(s.sign_ins)}",
                ok,
            )
        )
    add(
        "sign-in storm (64 connections): cached reads p99 < 50 ms, >= 50% of unloaded throughput",
        storm_rows or [("not measured", None)],
    )
    return lines


def closed_tables(res: Results) -> list[str]:
    from bench.run import CLOSED

    conns = res.args.connections
    out: list[str] = []
    for w in res.args.workers:
        bare, pk = res.closed.get(("bare", w)), res.closed.get(("pk", w))
        out += [
            f"### {shape(w, res.cores)}",
            "",
            "Requests/s (successful) by connections; the last columns: throughput at "
            f"{max(conns)} connections against the sweep's peak, and the errors of the sweep.",
            "",
            "| scenario | " + " | ".join(str(c) for c in conns) + " | last/peak | errors |",
            "|---|" + "---|" * (len(conns) + 2),
        ]
        for key, (title, _) in CLOSED.items():
            curve = res.closed.get((key, w))
            if not curve:
                continue
            x, _, _ = no_collapse(curve)
            cells = [f"{r.rps:,.0f}" for r in curve]
            errs = sum(r.errors for r in curve)
            out.append(f"| {title} | " + " | ".join(cells) + f" | {x:.0%} | {errs} |")
        out += [
            "",
            "p50 / p99 latency (ms) by connections, and in brackets p99 over the mean latency "
            "(connections / throughput, Little's law): once the server is saturated the mean "
            "grows with the queue, so a bracket that grows from column to column is tail "
            "latency the queue does not explain (stalls, unfair scheduling, timeouts):",
            "",
            "| scenario | " + " | ".join(str(c) for c in conns) + " |",
            "|---|" + "---|" * len(conns),
        ]
        for key, (title, _) in CLOSED.items():
            curve = res.closed.get((key, w))
            if curve:
                cells = [f"{r.p50_ms:.1f} / {r.p99_ms:.1f} ({tail_factor(r)})" for r in curve]
                out.append(f"| {title} | " + " | ".join(cells) + " |")
        if bare or pk:
            out += [
                "",
                "Ratios to the ceilings of the same run and worker count (x bare FastAPI / "
                "x bare asyncpg), by connections:",
                "",
                "| scenario | " + " | ".join(str(c) for c in conns) + " |",
                "|---|" + "---|" * len(conns),
            ]
            for key, (title, _) in CLOSED.items():
                curve = res.closed.get((key, w))
                if not curve or key in ("bare", "pk"):
                    continue
                cells = []
                for r in curve:
                    b = at(bare, r.connections) if bare else None
                    p = at(pk, r.connections) if pk else None
                    cells.append(
                        f"{ratio(r.rps, b.rps) if b else math.nan:.2f} / "
                        f"{ratio(r.rps, p.rps) if p else math.nan:.2f}"
                    )
                out.append(f"| {title} | " + " | ".join(cells) + " |")
        out += [
            "",
            "CPU over the whole sweep, as a share of one core (of "
            f"{res.cores}): the load generator (wrk), the server under test (all its "
            "processes), and how busy the whole machine was (every core, incl. PostgreSQL, "
            "Redis and anything else running):",
            "",
            "| scenario | wrk | server | machine busy | wrk CPU per request |",
            "|---|---|---|---|---|",
        ]
        for key, (title, _) in CLOSED.items():
            curve = res.closed.get((key, w))
            if not curve:
                continue
            wall = sum(r.cpu.wall_s for r in curve)
            gen = sum(r.cpu.generator_s for r in curve)
            srv = sum(r.cpu.server_s for r in curve)
            busy = sum(r.cpu.machine_busy * r.cpu.wall_s for r in curve) / wall if wall else 0
            reqs = sum(r.requests for r in curve)
            out.append(
                f"| {title} | {cpu_share(gen, wall)} | {cpu_share(srv, wall)} | {busy:.0%} "
                f"| {1e6 * gen / reqs if reqs else math.nan:.1f} µs |"
            )
        out.append("")
    return out


def storm_table(res: Results) -> list[str]:
    from bench.run import STORM_CONNECTIONS, STORM_USERS

    if not res.storms:
        return []
    out = [
        "## Sign-in storm",
        "",
        "Sign-ins (wrk, POST /api/v1/auth/login with the right password, rotating over "
        f"{STORM_USERS} accounts) at {STORM_CONNECTIONS} connections while "
        f"cached product GETs run at {STORM_CONNECTIONS} connections; the unloaded row is "
        "the same read alone, just before.",
        "",
        "| workers | run | req/s | p50 ms | p99 ms | max ms | errors | statuses | "
        "429/503 with Retry-After | CPU wrk / server |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in res.storms:
        for label, r in (
            ("cached GET, unloaded", s.unloaded),
            ("cached GET, during the storm", s.loaded),
            ("sign-ins", s.sign_ins),
        ):
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items())) or "-"
            ra = str(r.retry_after) if label == "sign-ins" else "-"
            out.append(
                f"| {s.workers} | {label} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                f"{r.max_ms:.0f} | {r.errors} | {statuses} | {ra} | "
                f"{cpu_share(r.cpu.generator_s, r.cpu.wall_s)} / "
                f"{cpu_share(r.cpu.server_s, r.cpu.wall_s)} |"
            )
    out += [
        "",
        "Sign-in req/s counts only 2xx answers; refused sign-ins are in the errors and the "
        "statuses. The CPU of the storm rows covers both wrk processes together.",
        "",
    ]
    return out


def open_table(res: Results) -> list[str]:
    if not res.naive_curve and not res.mixed_curve:
        return []
    out = [
        "## Load steps (open loop, k6 constant arrival rate, "
        f"{shape(res.open_workers, res.cores)})",
        "",
        "Requests start on schedule whatever the server does; an arrival that finds no free "
        "virtual user is dropped and counted (never delayed), so queueing shows in the "
        "latency or the dropped column. The naive order listing climbs until its p99 passes "
        f"{P99_BUDGET_MS:.0f} ms or a request fails: the highest rate under that is its "
        f"sustainable rate ({res.sustained:.0f}/s). The mixed workload (80% product GET, 15% "
        "the customer's order listing, 5% order creation with a fresh Idempotency-Key) then "
        "runs at 1x, 2x, 5x and 10x that rate.",
        "",
        "| workload | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | failed | "
        "dropped | p99 by kind (ms) | CPU k6 / server |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, curve in (("naive order listing", res.naive_curve), ("mixed", res.mixed_curve)):
        for r in curve:
            kinds = (
                "; ".join(f"{k} {v.p99_ms:.0f}" for k, v in r.kinds.items() if v.requests)
                if len(r.kinds) > 1
                else "-"
            )
            out.append(
                f"| {label} | {r.offered_rate:.0f} | {r.achieved_rate:.0f} | {r.p50_ms:.1f} | "
                f"{r.p90_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.0f} | {r.failed} | {r.dropped} "
                f"| {kinds} | {cpu_share(r.cpu.generator_s, r.cpu.wall_s)} / "
                f"{cpu_share(r.cpu.server_s, r.cpu.wall_s)} |"
            )
    return [*out, ""]


def chart(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from bench.run import CLOSED

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 8))
    styles = dict(zip(sorted(res.args.workers), ("--", "-", ":", "-."), strict=False))
    colors = plt.get_cmap("tab10")
    for i, (key, (title, _)) in enumerate(CLOSED.items()):
        for w in res.args.workers:
            curve = res.closed.get((key, w))
            if curve:
                left.plot(
                    [r.connections for r in curve],
                    [r.rps for r in curve],
                    marker="o",
                    markersize=3,
                    linestyle=styles.get(w, "-"),
                    color=colors(i),
                    label=f"{title}, {w}w",
                )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(res.args.connections, [str(c) for c in res.args.connections])
    left.set_xlabel("connections (closed loop, wrk)")
    left.set_ylabel("requests/s (successful)")
    left.set_title("Throughput against connections")
    left.legend(
        fontsize=7,
        ncol=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        title=f"dashed: {min(res.args.workers)} worker(s)",
        title_fontsize=7,
    )
    left.grid(True, which="both", alpha=0.3)

    curves: list[tuple[str, list[OpenResult]]] = [
        ("naive order listing", res.naive_curve),
        ("Storefront mixed 80/15/5", res.mixed_curve),
    ]
    for n, (label, steps) in enumerate(curves):
        if not steps:
            continue
        xs = [r.offered_rate for r in steps]
        color = colors(n)
        right.plot(xs, [r.p99_ms for r in steps], marker="o", color=color, label=f"{label} p99")
        right.plot(
            xs,
            [r.p50_ms for r in steps],
            marker=".",
            linestyle="--",
            color=color,
            label=f"{label} p50",
        )
    right.axhline(P99_BUDGET_MS, color="red", linewidth=0.8, label="p99 budget (100 ms)")
    right.set_xscale("log")
    rates = sorted({r.offered_rate for _, steps in curves for r in steps})
    if rates:
        right.set_xticks(rates, [f"{x:g}" for x in rates])
        right.xaxis.set_minor_formatter(NullFormatter())
    right.set_yscale("log")
    right.set_xlabel("offered load (requests/s, open loop, k6)")
    right.set_ylabel("latency (ms)")
    right.set_title(f"Latency against offered load ({res.open_workers} workers)")
    right.legend(fontsize=7)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(res: Results, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{res.started:%Y-%m-%d-%H%M}"
    png = folder / f"{stamp}-bench.png"
    chart(res, png)
    md = folder / f"{stamp}.md"
    md.write_text(render(res, png))
    (folder / f"{stamp}.json").write_text(json.dumps(raw(res), indent=1, default=str))
    return md


def raw(res: Results) -> dict[str, Any]:
    """Every measured number of the run, for comparisons the report does not make."""
    data = {k: v for k, v in asdict(res).items() if k not in ("args", "closed")}
    data["args"] = {
        k: v if isinstance(v, int | float | list) else str(v) for k, v in vars(res.args).items()
    }
    data["closed"] = {
        f"{key} @ {w} workers": [asdict(r) for r in curve] for (key, w), curve in res.closed.items()
    }
    return data


def render(res: Results, png: Path) -> str:
    lb, la = res.load_before, res.load_after
    busy = max(lb[0], la[0], lb[1], la[1]) > 0.5 * res.cores
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        f"# Benchmark — {res.started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {res.cores} cores, Python {sys.version.split()[0]}; everything on loopback "
        "(servers, PostgreSQL, Redis, load generators). Generators: "
        f"{res.tools.get('wrk', '?')} (closed loop, {res.cores} threads), "
        f"{res.tools.get('k6', '?')} (open loop). Commit measured: "
        f"{res.tools.get('source', '?')}. Command: `make bench"
        + (f' BENCH_ARGS="{argv}"' if argv else "")
        + f"` — {res.seconds_total / 60:.1f} minutes.",
        "",
        f"Closed loop: {res.args.seconds:g} s per point after a 1 s warm-up per scenario"
        + (
            f" (each point the median of {res.args.repeat} sweeps)"
            if getattr(res.args, "repeat", 1) > 1
            else ""
        )
        + ", "
        f"connections {', '.join(map(str, res.args.connections))}; one server at a time, at "
        f"{' and '.join(shape(w, res.cores) for w in res.args.workers)}. Rate limiting off "
        "(one client address), everything else as configured by default.",
        "",
        f"Load average (1/5/15 min): {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} before, "
        f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} after, on {res.cores} cores."
        + (
            " **The machine was busy with other work during this run**: the servers, "
            "PostgreSQL, Redis and the generators shared the cores with it (see the "
            "'machine busy' column), so absolute numbers are low and noisy; the ratios "
            "(measured side by side, one server at a time) are the meaningful part — rerun "
            "on an idle machine before trusting a FAIL."
            if busy
            else ""
        ),
        "",
        "## Targets",
        "",
        *targets(res),
        "",
        f"![throughput against connections, latency against offered load]({png.name})",
        "",
        "## Closed loop (wrk)",
        "",
        *closed_tables(res),
        *storm_table(res),
        *open_table(res),
    ]
    if res.order_cpu_output:
        lines += [
            "## Order paths, CPU per request (bench/hot_path_cpu.py --orders-only)",
            "",
            "```",
            res.order_cpu_output[-3000:],
            "```",
            "",
        ]
    lines += [
        "Where the time goes: `bench/profile_hot_paths.py` and `bench/hot_path_cpu.py "
        "--profile` print profiles of the same paths (bench/README.md).",
        "",
        f"Written by bench/run.py at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    return "\n".join(lines)
