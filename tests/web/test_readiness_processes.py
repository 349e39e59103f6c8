"""Every process computes its own readiness and exports it (decision 0112).

A real `storefront serve` and a real `storefront worker` that nobody polls on /readyz both
export ``storefront_ready 1``, and the alert rules, fed what they export, page nobody."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import migrated_sqlite, require_or_skip
from tests.support.servers import cli_env, free_port, serve, stop

ALERTS = Path(__file__).parents[2] / "deploy" / "monitoring" / "prometheus" / "alerts.yml"


def _ready_gauge(url: str) -> float | None:
    try:
        text = httpx2.get(url, timeout=5).text
    except httpx2.TransportError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "storefront_ready":
                return sample.value
    return None


def _settled(url: str, proc: subprocess.Popen[str], within: float = 120) -> float | None:
    """The gauge once the process serves /metrics and has had time for a few checks (as
    generous as wait_ready: a process boots slowly on a busy two-core host)."""
    deadline = time.monotonic() + within
    value = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
        value = _ready_gauge(url)
        if value == 1:
            return value
        time.sleep(0.25)
    return value


def _promtool_says_nobody_is_paged(tmp_path: Path, api: float, worker: float) -> str:
    """Run the alert rules on the values the two processes export (held for 15 minutes)."""
    tests = tmp_path / "ready_test.yml"
    tests.write_text(
        textwrap.dedent(
            f"""\
            rule_files:
              - {ALERTS}
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'storefront_ready{{instance="api",job="storefront"}}'
                    values: '{api:g}x15'
                  - series: 'storefront_ready{{instance="worker",job="storefront-worker"}}'
                    values: '{worker:g}x15'
                alert_rule_test:
                  - eval_time: 15m
                    alertname: StorefrontNotReady
                    exp_alerts: []
                  - eval_time: 15m
                    alertname: StorefrontReadinessFlapping
                    exp_alerts: []
            """
        )
    )
    done = subprocess.run(  # noqa: S603 - a fixed local binary
        [str(shutil.which("promtool")), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout + done.stderr if done.returncode else ""


def test_api_and_worker_export_ready_without_anyone_polling_readyz(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    require_or_skip(None if shutil.which("promtool") else "promtool is not installed")
    env = cli_env(
        migrated_sqlite(tmp_path / "ready.db"),
        STOREFRONT_BROKER_URL=redis_url,
        STOREFRONT_JOBS__QUEUE=f"{redis_prefix}jobs",
        STOREFRONT_REDIS_PREFIX=redis_prefix,
        STOREFRONT_OBSERVABILITY__READINESS_INTERVAL_SECONDS="0.5",
    )
    api, base = serve(env)
    metrics_port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "storefront.cli", "worker"],
        env={
            **os.environ,
            **env,
            "STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT": str(metrics_port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # /metrics only: before the fix an API process exported 0 until /readyz was polled
        api_ready = _settled(f"{base}/metrics", api)
        worker_ready = _settled(f"http://127.0.0.1:{metrics_port}/metrics", worker)
        assert api_ready == 1
        assert worker_ready == 1  # before the fix: 0 for ever
        assert _promtool_says_nobody_is_paged(tmp_path, api_ready, worker_ready) == ""
        # ...while a worker stuck at 0 (what it exported before the fix) pages
        assert "StorefrontNotReady" in _promtool_says_nobody_is_paged(tmp_path, 1, 0)
    finally:
        stop(api)
        stop(worker)
