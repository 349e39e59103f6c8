"""Redaction rules, route labels, and the monitoring assets under deploy/monitoring/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from storefront.telemetry import metrics  # noqa: F401 - registers the metrics
from storefront.telemetry.logging import is_sensitive_key, redact, redact_text
from tests.conftest import require_or_skip

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
ALERTS = MONITORING / "prometheus" / "alerts.yml"
ALERT_TESTS = MONITORING / "prometheus" / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana" / "storefront.json"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "access_token",
        "refresh_token",
        "Authorization",
        "code",
        "recovery_codes",
        "mfa_token",
        "email",
        "shipping_address",
        "client_address",
        "line1",
        "phone",
        "totp_secret",
    ],
)
def test_sensitive_keys_are_blanked(key: str) -> None:
    assert is_sensitive_key(key)
    assert redact({key: "value", "nested": [{key: "value"}]}) == {
        key: "[redacted]",
        "nested": [{key: "[redacted]"}],
    }


@pytest.mark.parametrize("key", ["status_code", "route", "method", "user_id", "duration_ms"])
def test_useful_keys_are_kept(key: str) -> None:
    assert not is_sensitive_key(key)
    assert redact({key: 200}) == {key: 200}


def test_secrets_inside_free_text_are_masked() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abcDEF123_-"
    text = (
        f"user Alice.B@Example.org sent Authorization: Bearer {jwt} with password=hunter2 "
        'and {"code": "123456"}'
    )
    masked = redact_text(text)
    for secret in ("Alice.B@Example.org", jwt, "hunter2", "123456"):
        assert secret not in masked
    assert "[email]" in masked


def _metric_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bstorefront_[a-z_]+\b", text))


def test_every_metric_the_alerts_and_dashboard_use_exists() -> None:
    known = _metric_names()
    for asset in (ALERTS, ALERT_TESTS, DASHBOARD):
        used = _referenced(asset.read_text())
        assert used, asset
        assert used <= known, (asset.name, sorted(used - known))


def test_the_dashboard_is_valid_grafana_json_covering_every_area() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "storefront-overview"
    titles = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert titles == [
        "SLOs",
        "HTTP (RED per route)",
        "Business KPIs",
        "Database",
        "Cache and rate limiting",
        "Jobs",
        "Outgoing dependencies",
        "Domain events",
    ]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def _promtool_missing() -> str | None:
    if shutil.which("promtool") is None:
        return "promtool is not installed (apt-get install prometheus)"
    return None


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    require_or_skip(_promtool_missing())
    promtool = str(shutil.which("promtool"))
    check = subprocess.run(  # noqa: S603 - a fixed binary and our own files
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(  # noqa: S603
        [promtool, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, check=False
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def test_the_worker_serves_its_job_metrics_on_its_own_port() -> None:
    import socket

    import httpx2

    from storefront.telemetry.metrics import observe_job, serve_metrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = serve_metrics(port)
    assert server is not None
    try:
        with observe_job("unit.worker-job"):
            pass
        body = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'storefront_job_duration_seconds_count{job="unit.worker-job"' in body
        assert serve_metrics(port) is None  # taken: logged, not fatal
    finally:
        server.shutdown()
        server.server_close()
    assert serve_metrics(0) is None
