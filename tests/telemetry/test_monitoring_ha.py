"""The availability monitoring under deploy/monitoring/: the SLO panel plots the
burn-rate windows and factors the alerts use, every alert has its runbook entry and a firing
and a silent promtool case, and the loopback cluster's Prometheus configuration is valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from tests.conftest import require_or_skip
from tests.telemetry.test_observability_units import _metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "monitoring" / "prometheus"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana" / "storefront.json"
OPERATIONS = ROOT / "docs" / "operations.md"


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _panel(title: str) -> dict[str, Any]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found: list[dict[str, Any]] = [p for p in panels if p["title"] == title]
    assert len(found) == 1, title
    return found[0]


def _availability_burn_alerts() -> list[dict[str, Any]]:
    alerts = [r for r in _rules() if r.get("labels", {}).get("slo") == "availability"]
    assert {a["alert"] for a in alerts} == {
        "StorefrontAvailabilityBudgetBurnFast",
        "StorefrontAvailabilityBudgetBurnSlow",
    }
    return alerts


def test_the_slo_panel_plots_every_burn_window_and_factor_the_alerts_use() -> None:
    alerts = _availability_burn_alerts()
    alert_windows: set[str] = set()
    factors: set[float] = set()
    for alert in alerts:
        alert_windows |= set(re.findall(r"storefront:http_errors:ratio_rate(\w+)", alert["expr"]))
        factors |= {float(f) for f in re.findall(r">\s*\(([\d.]+) \* 0\.001\)", alert["expr"])}
        if re.search(r">\s*0\.001\b", alert["expr"]):
            factors.add(1.0)
    assert alert_windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert factors == {14.4, 6.0, 3.0, 1.0}

    panel = _panel("Availability error budget burn rate (multi-window)")
    assert panel["type"] == "timeseries"
    plotted = {}
    for target in panel["targets"]:
        match = re.fullmatch(r"storefront:http_errors:ratio_rate(\w+) / 0\.001", target["expr"])
        assert match, target["expr"]
        plotted[match.group(1)] = target["legendFormat"]
    assert set(plotted) == alert_windows
    assert all(window == legend for window, legend in plotted.items())
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {s["value"] for s in steps if s["value"] is not None} == factors
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_the_budget_remaining_uses_the_slo_target_and_the_sli_of_the_alerts() -> None:
    panel = _panel("Availability error budget remaining (30d)")
    expr = panel["targets"][0]["expr"]
    assert expr.endswith("/ 0.001")
    assert "[30d]" in expr
    # the same requests as the recording rules: probes and /metrics are not API traffic
    sli = 'route!~"/livez|/readyz|/healthz|/metrics"'
    assert expr.count(sli) == 2
    rule = next(r for r in _rules() if r.get("record") == "storefront:http_errors:ratio_rate1h")
    assert rule["expr"].count(sli) == 2


def test_every_recording_rule_and_metric_the_dashboard_uses_exists() -> None:
    text = DASHBOARD.read_text()
    recorded = {r["record"] for r in _rules() if "record" in r}
    used = set(re.findall(r"\bstorefront:[a-z0-9_:]+", text))
    assert used
    assert used <= recorded, sorted(used - recorded)
    metrics = set(re.findall(r"\bstorefront_[a-z_]+\b", text))
    assert metrics <= _metric_names(), sorted(metrics - _metric_names())


def _alert_test_cases() -> dict[str, tuple[int, int]]:
    """alertname -> (cases where it fires, cases where it must stay silent)."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    seen: dict[str, tuple[int, int]] = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            fires, silent = seen.get(check["alertname"], (0, 0))
            if check.get("exp_alerts"):
                fires += 1
            else:
                silent += 1
            seen[check["alertname"]] = (fires, silent)
    return seen


def test_every_alert_has_a_runbook_entry_and_firing_and_silent_promtool_cases() -> None:
    """Every alert fires in some promtool case; the SLO burn alerts and the PostgreSQL tier's
    also have a case where they must stay silent (a failover that succeeds, healthy traffic)."""
    operations = OPERATIONS.read_text()
    cases = _alert_test_cases()
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 20
    for alert in alerts:
        runbook = alert["annotations"]["runbook"]
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md", runbook
        assert f'<a id="{anchor}"></a>' in operations, anchor
        fires, silent = cases.get(alert["alert"], (0, 0))
        assert fires >= 1, f"{alert['alert']}: no promtool case where it fires"
        if alert["alert"].startswith(("Patroni", "Postgres")) or "slo" in alert["labels"]:
            assert silent >= 1, f"{alert['alert']}: no promtool case where it stays silent"


def test_the_clusters_prometheus_configuration_is_valid_and_labels_the_database_tier() -> None:
    config = yaml.safe_load((PROMETHEUS / "cluster.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"storefront", "patroni", "postgres"}
    # the archive alerts join the exporter's series to Patroni's on (scope, name)
    for name in ("patroni", "postgres"):
        nodes = [(c["labels"]["scope"], c["labels"]["name"]) for c in jobs[name]["static_configs"]]
        assert nodes == [("storefront", "pg1"), ("storefront", "pg2")], name
    assert jobs["patroni"]["honor_labels"] is True  # Patroni's own scope and name labels
    promtool = shutil.which("promtool")
    require_or_skip(None if promtool else "promtool is not installed (apt-get install prometheus)")
    check = subprocess.run(  # noqa: S603 - a fixed binary and our own file
        [str(promtool), "check", "config", str(PROMETHEUS / "cluster.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
