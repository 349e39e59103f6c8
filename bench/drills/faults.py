"""The drills: each injects one fault into the running cluster while the load runs, and may
heal it afterwards (outside the measured window) so the next drill starts from a whole
cluster. A drill whose scripts are not in the tree (a component not deployed yet) is skipped.

The API tier's faults go through deploy/cluster/api/instance.sh; the data tier's through the
component's own script (deploy/cluster/<component>/kill-*.sh), which kills and returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
API = "deploy/cluster/api"
STATS_URL = "http://127.0.0.1:8150/;csv"


class FaultFailed(Exception):
    pass


@dataclass
class Context:
    """What a drill's fault sees: the load's clock (``mark``) and the scripts."""

    clock: Callable[[], float]
    log: Path
    events: list[tuple[float, str]] = field(default_factory=list)
    fault_at: float | None = None

    def mark(self, event: str, *, fault: bool = False) -> None:
        now = self.clock()
        self.events.append((round(now, 3), event))
        if fault and self.fault_at is None:
            self.fault_at = now
        print(f"  {now:7.1f}s  {event}", flush=True)

    async def sh(self, script: str, *args: str) -> None:
        """Run a script of the tree (bash), its output appended to the drill's log."""
        with self.log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                "bash",
                str(REPO / script),
                *args,
                stdout=out,
                stderr=out,
                cwd=REPO,
                env=os.environ.copy(),
            )
            code = await process.wait()
        if code != 0:
            raise FaultFailed(f"{script} {' '.join(args)} exited {code} (see {self.log})")


async def api_servers() -> dict[str, str]:
    """HAProxy's view of the API instances: name -> status (UP, DOWN, MAINT, ...)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(STATS_URL, timeout=aiohttp.ClientTimeout(total=3)) as response,
    ):
        text = await response.text()
    servers = {}
    for line in text.splitlines():
        cells = line.split(",")
        if len(cells) > 17 and cells[0] == "storefront" and cells[1] not in {"BACKEND", "FRONTEND"}:
            servers[cells[1]] = cells[17]
    return servers


async def wait_balanced(within: float = 240.0) -> None:
    """Until HAProxy routes to every API instance (each passed its /readyz checks)."""
    deadline = asyncio.get_running_loop().time() + within
    last: dict[str, str] = {}
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await api_servers()
            if last and all(status == "UP" for status in last.values()):
                return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.5)
    raise FaultFailed(f"HAProxy does not route to every API instance: {last or 'no answer'}")


Step = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Drill:
    name: str
    fault: str  # what happens, for the report
    expect: str  # what should happen
    inject: Step
    needs: tuple[str, ...] = ()  # scripts that must be in the tree
    heal: Step | None = None
    settle: float = 25.0  # seconds of load after inject returns
    # --prometheus: an alert the fault raises when it lasts. The fault is then held after the
    # window until that alert fires, healed, and the alert watched until it resolves
    held_alert: str | None = None

    def missing(self) -> list[str]:
        return [script for script in self.needs if not (REPO / script).is_file()]


async def _api_kill(ctx: Context) -> None:
    ctx.mark("SIGKILL api1 (its process group)", fault=True)
    await ctx.sh(f"{API}/instance.sh", "kill", "api1")
    await asyncio.sleep(10)
    ctx.mark("start api1")
    await ctx.sh(f"{API}/instance.sh", "start", "api1")
    await wait_balanced()
    ctx.mark("api1 back in HAProxy")


async def _api_term(ctx: Context) -> None:
    ctx.mark("SIGTERM api2 (graceful: drain, then stop)", fault=True)
    await ctx.sh(f"{API}/instance.sh", "stop", "api2")
    ctx.mark("api2 exited")
    await ctx.sh(f"{API}/instance.sh", "start", "api2")
    await wait_balanced()
    ctx.mark("api2 back in HAProxy")


async def _rolling(ctx: Context) -> None:
    for name in ("api1", "api2"):
        ctx.mark(f"restart {name} (SIGTERM, start, ready)", fault=True)
        await ctx.sh(f"{API}/instance.sh", "restart", name)
        await wait_balanced()
        ctx.mark(f"{name} back in HAProxy")


def _script(script: str, event: str, *args: str) -> Step:
    async def step(ctx: Context) -> None:
        ctx.mark(event, fault=True)
        await ctx.sh(script, *args)
        ctx.mark(f"{Path(script).name} returned")

    return step


def _heal(script: str) -> Step:
    async def step(ctx: Context) -> None:
        if (REPO / script).is_file():
            await ctx.sh(script)
            ctx.mark(f"healed: {Path(script).name} returned 0")

    return step


PG = "deploy/cluster/postgres"
REDIS = "deploy/cluster/redis"
RABBIT = "deploy/cluster/rabbitmq"


async def _nothing(ctx: Context) -> None:
    ctx.mark("no fault: the steady state")


DRILLS: tuple[Drill, ...] = (
    Drill(
        "steady",
        "none (the same load with no fault: the baseline the others compare with)",
        "every request succeeds",
        _nothing,
        settle=30.0,
    ),
    Drill(
        "api-kill",
        "SIGKILL of one API instance's whole process group; restarted 10 s later",
        "HAProxy routes around it (retrying the requests the dead instance dropped)",
        _api_kill,
        needs=(f"{API}/instance.sh",),
        settle=10.0,
    ),
    Drill(
        "api-term",
        "SIGTERM of one API instance (graceful), restarted once it has exited",
        "/readyz 503 during the drain, HAProxy stops routing to it before it stops serving",
        _api_term,
        needs=(f"{API}/instance.sh",),
        settle=10.0,
    ),
    Drill(
        "rolling-restart",
        "every API instance restarted in turn (SIGTERM, start, ready), the deploy path",
        "no failed request",
        _rolling,
        needs=(f"{API}/instance.sh",),
        settle=10.0,
    ),
    Drill(
        "postgres-primary-kill",
        "SIGKILL of the PostgreSQL primary's process group (kill-primary.sh)",
        "Patroni promotes the synchronous standby, HAProxy follows, Storefront reconnects",
        # the drill's load measures: the script only kills (no write probe of its own)
        _script(f"{PG}/kill-primary.sh", "kill the PostgreSQL primary", "--kill-only"),
        needs=(f"{PG}/kill-primary.sh",),
        heal=_heal(f"{PG}/rejoin.sh"),
        settle=45.0,
    ),
    Drill(
        "postgres-replica-stop",
        "the PostgreSQL replica stopped (stop-replica.sh)",
        "reads fall back to the primary",
        _script(f"{PG}/stop-replica.sh", "stop the PostgreSQL replica", "--stop-only"),
        needs=(f"{PG}/stop-replica.sh",),
        heal=_heal(f"{PG}/rejoin.sh"),
        settle=30.0,
        # the primary commits with no synchronous copy while its standby is away
        held_alert="PatroniNoSynchronousStandby",
    ),
    Drill(
        "redis-master-kill",
        "SIGKILL of the Redis master (kill-master.sh)",
        "Sentinel promotes the replica; cache, rate limiter and subscriptions recover",
        _script(f"{REDIS}/kill-master.sh", "kill the Redis master"),
        needs=(f"{REDIS}/kill-master.sh",),
        heal=_heal(f"{REDIS}/rejoin.sh"),
        settle=30.0,
    ),
    Drill(
        "rabbitmq-leader-kill",
        "SIGKILL of the RabbitMQ node holding the job queue's leader (kill-leader.sh)",
        "the quorum queue elects a new leader; jobs and events keep flowing; the killed node "
        "rejoins (rejoin.sh checks three nodes running and every replica of the job queue "
        "online)",
        _script(f"{RABBIT}/kill-leader.sh", "kill the RabbitMQ queue leader"),
        needs=(f"{RABBIT}/kill-leader.sh",),
        heal=_heal(f"{RABBIT}/rejoin.sh"),
        settle=30.0,
    ),
)

BY_NAME = {drill.name: drill for drill in DRILLS}
