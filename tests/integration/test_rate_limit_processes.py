"""Two real server processes on one Redis draw on one rate-limit budget."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx2

from tests.integration.test_cli_and_serve import CLI, _env, _free_port, _run

V1 = "/api/v1"


def _wait_ready(base: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Generous: two servers start at once on a machine the whole suite is loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx2.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "serve"],
        env={**env, "STOREFRONT_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_processes_share_one_budget(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    env = _env(
        url,
        STOREFRONT_REDIS_URL=redis_url,
        STOREFRONT_REDIS_PREFIX=redis_prefix,
        STOREFRONT_PROTECTION__ANONYMOUS_RATE="4/minute",
    )
    _run(["migrate"], env)
    first, a = _serve(env)
    second, b = _serve(env)
    try:
        _wait_ready(a, first)
        _wait_ready(b, second)
        statuses = []
        for base in (a, b, a, b):
            r = httpx2.get(f"{base}{V1}/shops/{uuid.uuid4()}", timeout=5)
            statuses.append(r.status_code)
        assert statuses == [404, 404, 404, 404]
        # the fourth request (to the second process) saw the budget both had spent
        assert '"anonymous";r=0' in r.headers["RateLimit"]
        for base in (a, b):
            refused = httpx2.get(f"{base}{V1}/shops/{uuid.uuid4()}", timeout=5)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["Retry-After"]) >= 1
            assert "server" not in refused.headers
        health = httpx2.get(f"{a}/healthz", timeout=5).json()["components"]
        assert health["rate_limiter"]["scope"] == "shared"

    finally:
        _stop(first)
        _stop(second)
