"""`storefront serve` as operators run it: drain on SIGTERM, metrics across worker processes,
and a real Prometheus scraping it."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import migrated_sqlite, require_or_skip
from tests.support.factories import ProductInFactory
from tests.support.servers import cli_env, free_port, serve, stop, wait_ready


@pytest.fixture
def served(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = migrated_sqlite(tmp_path / "serve.db")
    port = free_port()
    env = cli_env(url, STOREFRONT_PORT=str(port))
    return f"http://127.0.0.1:{port}", env


async def _sign_up(client: httpx2.AsyncClient) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    password = "a-long-enough-password"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "display_name": "O"}
    )
    assert r.status_code == 201, r.text
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _until_in_flight(base: str, request: asyncio.Task[httpx2.Response]) -> None:
    """Until the server counts a request in flight besides the scrape asking."""
    async with httpx2.AsyncClient(base_url=base, timeout=30) as fresh:
        for _ in range(600):
            assert not request.done(), request.result().text
            samples = _samples((await fresh.get("/metrics")).text)
            if samples.get(("storefront_http_requests_in_flight", frozenset()), 0) >= 2:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the bulk request never reached the server")


async def _drain(base: str, proc: subprocess.Popen[str]) -> dict[str, object]:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        auth = await _sign_up(client)
        shop = (
            await client.post(
                "/api/v1/shops",
                json={"name": "S", "slug": f"s-{uuid.uuid4().hex[:8]}"},
                headers=auth,
            )
        ).json()
        items = [ProductInFactory.build().model_dump() for _ in range(1000)]
        in_flight = asyncio.create_task(
            client.post(
                f"/api/v1/shops/{shop['id']}/products/bulk", json={"items": items}, headers=auth
            )
        )
        # signal only once the server is running it: on a loaded machine the body could
        # still be on its way when uvicorn's shutdown closes the idle connection (ReadError)
        await _until_in_flight(base, in_flight)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with httpx2.AsyncClient(base_url=base, timeout=5) as fresh:  # a new connection
            ready = await fresh.get("/readyz")
            live = await fresh.get("/livez")
        finished = await in_flight
        return {
            "ready": ready,
            "live": live,
            "finished": finished,
            "in_flight_done_while_draining": proc.poll() is None,
        }


def test_on_sigterm_readiness_fails_first_while_in_flight_requests_finish(
    served: tuple[str, dict[str, str]],
) -> None:
    base, env = served
    env = {**env, "STOREFRONT_OBSERVABILITY__SHUTDOWN_DRAIN_SECONDS": "3"}
    proc, _ = serve(env, int(env["STOREFRONT_PORT"]))
    try:
        wait_ready(base, proc)
        result = asyncio.run(_drain(base, proc))
        ready, live, finished = result["ready"], result["live"], result["finished"]
        assert isinstance(ready, httpx2.Response)
        assert isinstance(live, httpx2.Response)
        assert isinstance(finished, httpx2.Response)
        # still accepting connections, but no longer ready: the balancer takes it out
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"] == "application/problem+json"
        assert live.status_code == 200
        assert finished.status_code == 200, finished.text
        assert finished.json() == {"created": 1000, "updated": 0}
        assert result["in_flight_done_while_draining"]
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        output = stop(proc, signal.SIGINT, within=20)
    assert "draining" in output


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_add_up_across_worker_processes(served: tuple[str, dict[str, str]]) -> None:
    base, env = served
    metrics_dir = tempfile.mkdtemp(prefix="sf-mp-")
    env = {**env, "STOREFRONT_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    proc, _ = serve(env, int(env["STOREFRONT_PORT"]))
    try:
        wait_ready(base, proc)
        n = 60
        for _ in range(n):
            # a new connection each time, so both workers answer some
            r = httpx2.get(f"{base}/livez", headers={"Connection": "close"})
            assert r.status_code == 200
        samples = _samples(httpx2.get(f"{base}/metrics").text)
        key = (
            "storefront_http_requests_total",
            frozenset({"method": "GET", "route": "/livez", "status_class": "2xx"}.items()),
        )
        # every worker's requests, whichever worker renders the scrape
        assert samples[key] >= n
        files = list(Path(metrics_dir).glob("*.db"))
        assert len({f.name.rsplit("_", 1)[-1] for f in files}) >= 2, files  # two pids wrote
    finally:
        stop(proc, signal.SIGINT, within=20)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _prometheus_missing() -> str | None:
    if shutil.which("prometheus") is None:
        return "the prometheus binary is not installed (apt-get install prometheus)"
    return None


def test_a_real_prometheus_scrapes_the_app_and_answers_a_query(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    require_or_skip(_prometheus_missing())
    base, env = served
    proc, _ = serve(env, int(env["STOREFRONT_PORT"]))
    prom: subprocess.Popen[str] | None = None
    try:
        wait_ready(base, proc)
        asyncio.run(_place_traffic(base))
        prom_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: storefront\n"
            f"    static_configs:\n      - targets: ['{base.removeprefix('http://')}']\n"
        )
        prom = subprocess.Popen(  # noqa: S603 - a fixed binary
            [
                str(shutil.which("prometheus")),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        query = 'storefront_signups_total{job="storefront"}'
        deadline = time.monotonic() + 60
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            assert prom.poll() is None, prom.stdout.read() if prom.stdout else ""
            try:
                r = httpx2.get(
                    f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": query}, timeout=2
                )
                if r.status_code == 200:
                    result = r.json()["data"]["result"]
            except httpx2.TransportError:
                pass
            time.sleep(0.5)
        assert result, "Prometheus never returned the series"
        [series] = result
        assert series["metric"]["instance"] == base.removeprefix("http://")  # type: ignore[index]
        assert float(series["value"][1]) >= 1  # type: ignore[index]
        up = httpx2.get(
            f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "up"}, timeout=2
        ).json()["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        if prom is not None:
            stop(prom, within=20)
        stop(proc, signal.SIGINT, within=20)


async def _place_traffic(base: str) -> None:
    async with httpx2.AsyncClient(base_url=base, timeout=30) as client:
        await _sign_up(client)
