"""``--prometheus``: Prometheus (Debian's package) scraping the loopback cluster during the
drills, with the project's alert rules (deploy/monitoring/prometheus/alerts.yml), and each
drill's alert timeline read back from Prometheus's API into the report.

Prometheus scrapes the two API instances (their /metrics, on the API port outside production)
and the two job workers (:9111, :9112) every 2 s and evaluates the rules every 5 s. After a
drill's window (not counted in its numbers), a read-only load at the drill's rate goes on
while the runner polls ``/api/v1/alerts`` until the watched alert has fired and resolved, or
``watch_limit`` has passed; then ``ALERTS{alertname=...}`` over the whole span
(``/api/v1/query_range``) is the evidence kept in the report. The watched alert is the
availability SLO's fast burn (5xx over 1.44% in both the 5-minute and the 1-hour window for
2 minutes): the server's own view of a failover, whatever the clients' retries hid.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "monitoring" / "prometheus" / "alerts.yml"
PORT = 9190
WATCHED = "StorefrontAvailabilityBudgetBurnFast"
API_TARGETS = ("127.0.0.1:8101", "127.0.0.1:8102")
WORKER_TARGETS = ("127.0.0.1:9111", "127.0.0.1:9112")
# the PostgreSQL tier (deploy/cluster/postgres/lib.sh): node -> Patroni's REST port, exporter
PATRONI_SCOPE = "storefront"
PATRONI_TARGETS = {"pg1": "127.0.0.1:8441", "pg2": "127.0.0.1:8442"}
EXPORTER_TARGETS = {"pg1": "127.0.0.1:9187", "pg2": "127.0.0.1:9188"}


def config(rules: Path = RULES, *, postgres: bool = False) -> str:
    """prometheus.yml for the loopback cluster (job name ``storefront``: the rules select it).

    ``postgres``: the cluster runs its own PostgreSQL tier; Patroni's /metrics (job
    ``patroni``) and each node's prometheus-postgres-exporter (job ``postgres``) are scraped
    too, every target labelled ``scope`` and ``name`` as in
    deploy/monitoring/prometheus/cluster.yml, which the PostgreSQL alerts join on."""
    api = ", ".join(f'"{t}"' for t in API_TARGETS)
    workers = ", ".join(f'"{t}"' for t in WORKER_TARGETS)
    text = (
        "global:\n"
        "  scrape_interval: 2s\n"
        "  evaluation_interval: 5s\n"
        f"rule_files: [{str(rules)!r}]\n"
        "scrape_configs:\n"
        "  - job_name: storefront\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: [{api}]\n"
        "        labels: {role: api}\n"
        f"      - targets: [{workers}]\n"
        "        labels: {role: worker}\n"
    )
    if not postgres:
        return text
    for job, targets, honor in (
        ("patroni", PATRONI_TARGETS, True),
        ("postgres", EXPORTER_TARGETS, False),
    ):
        text += f"  - job_name: {job}\n    metrics_path: /metrics\n"
        if honor:
            # Patroni labels its series scope and name itself: keep them
            text += "    honor_labels: true\n"
        text += "    static_configs:\n"
        for name, target in targets.items():
            text += (
                f'      - targets: ["{target}"]\n'
                f"        labels: {{scope: {PATRONI_SCOPE}, name: {name}}}\n"
            )
    return text


class PrometheusFailed(Exception):
    pass


@dataclass
class AlertWatch:
    """What the runner saw of one alert after a drill: its states over time."""

    alert: str
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (unix time, state)
    series: list[tuple[float, str]] = field(default_factory=list)  # ALERTS samples
    fired: bool = False
    resolved: bool = False


class Prometheus:
    def __init__(self, directory: Path, port: int = PORT, *, postgres: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.postgres = postgres
        self.base = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusFailed("prometheus is not installed (Debian's package: prometheus)")
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "prometheus.yml"
        conf.write_text(config(postgres=self.postgres))
        log = (self.directory / "prometheus.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise PrometheusFailed(f"prometheus exited (see {self.directory})")
                try:
                    async with session.get(f"{self.base}/-/ready") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise PrometheusFailed(f"prometheus not ready within {within:g} s")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def _get(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with session.get(
            self.base + path, params=params, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise PrometheusFailed(f"{path}: {body}")
        return body["data"]

    async def alert_state(self, session: aiohttp.ClientSession, alert: str) -> str:
        """``inactive``, ``pending`` or ``firing`` (the alert's worst instance)."""
        data = await self._get(session, "/api/v1/alerts")
        states = {a["state"] for a in data["alerts"] if a["labels"].get("alertname") == alert}
        return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"

    async def alert_series(
        self, session: aiohttp.ClientSession, alert: str, start: float, end: float
    ) -> list[tuple[float, str]]:
        """``ALERTS{alertname=alert}`` from ``start`` to ``end`` every 5 s: (time, state), a
        step with no sample ``inactive`` (the series exists only while pending or firing)."""
        data = await self._get(
            session,
            "/api/v1/query_range",
            query=f'ALERTS{{alertname="{alert}"}}',
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step="5",
        )
        steps = int((end - start) // 5) + 1
        samples: dict[float, str] = {round(start + 5 * i, 3): "inactive" for i in range(steps)}
        for series in data["result"]:
            state = series["metric"].get("alertstate", "")
            for t, _value in series["values"]:
                # firing wins over pending at the same instant (two instances of the rule)
                if samples.get(round(float(t), 3)) != "firing":
                    samples[round(float(t), 3)] = state
        return sorted(samples.items())


def transitions(states: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The changes in a sequence of (time, state) observations, the first one included."""
    changes: list[tuple[float, str]] = []
    for t, state in states:
        if not changes or changes[-1][1] != state:
            changes.append((t, state))
    return changes


def fired_and_resolved(changes: list[tuple[float, str]]) -> tuple[bool, bool]:
    """Whether the alert reached ``firing``, and went back to ``inactive`` after that."""
    fired = resolved = False
    for _t, state in changes:
        if state == "firing":
            fired, resolved = True, False
        elif state == "inactive" and fired:
            resolved = True
    return fired, resolved
