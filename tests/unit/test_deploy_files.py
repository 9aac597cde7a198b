"""The files shipped for operators in deploy/: the Grafana dashboard and the Prometheus
alert rules and example configuration. Static checks only (no Prometheus needed):
tests/e2e/test_prometheus.py runs them against a real Prometheus and Ferry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ferry-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "ferry-alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "ferry-alerts.test.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

ALERT_NAMES = {
    "FerryHighErrorRatio",
    "FerryLatencyP99OverSLO",
    "FerryQueueSaturation",
    "FerryModelNotReady",
    "FerryNoProductionTraffic",
}
# Metric names of Ferry and of prometheus_client's process collector, in PromQL.
METRIC_NAME = re.compile(r"\b(?:ferry|process|python)_[a-z0-9_]*[a-z0-9]\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's own variables, set by Grafana for every query.
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
VARIABLE = re.compile(r"\$\{?(\w+)")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in panels(load_dashboard()) for target in panel["targets"]]


def variable_queries() -> list[str]:
    return [v["definition"] for v in load_dashboard()["templating"]["list"] if v["type"] == "query"]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def documented_metrics() -> tuple[set[str], set[str]]:
    """(every metric name docs/metrics.md mentions, those its tables call histograms)."""
    text = METRICS_DOC.read_text()
    histograms = set(re.findall(r"^\| `(\w+)` \| histogram \|", text, re.MULTILINE))
    return set(METRIC_NAME.findall(text)), histograms


def undocumented(names: set[str]) -> set[str]:
    documented, histograms = documented_metrics()
    missing = set()
    for name in names:
        if name in documented:
            continue
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or base not in histograms:
            missing.add(name)
    return missing


# -- the dashboard ---------------------------------------------------------------------


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] == "Ferry"
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None  # import makes a new one
    ids = [panel["id"] for panel in dashboard["panels"]] + [
        inner["id"] for panel in dashboard["panels"] for inner in panel.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "model", "version"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "model", "version"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["definition"].startswith("label_values(")
        assert variable["definition"].endswith(f", {name})")
        # "All" must match the empty version of unrouted requests too.
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"


def test_every_panel_has_a_title_and_prometheus_targets() -> None:
    found = panels(load_dashboard())
    assert len(found) >= 25
    for panel in found:
        assert panel["title"].strip(), panel
        assert panel.get("description", "").strip(), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_dashboard_rows_cover_the_golden_signals() -> None:
    rows = [panel["title"] for panel in load_dashboard()["panels"] if panel["type"] == "row"]
    assert rows == [
        "Overview",
        "Traffic",
        "Errors",
        "Latency",
        "Saturation",
        "Batching",
        "Per version",
        "Models",
        "API keys",
        "Process",
    ]
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "histogram_quantile(0.5, sum by (le) (rate(ferry_request_duration_seconds_bucket",
        "histogram_quantile(0.9, sum by (le) (rate(ferry_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(ferry_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, model, version) (rate(ferry_queue_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, model, version) (rate(ferry_compute_duration_seconds_bucket",
        "rate(ferry_batch_size_sum",
        "rate(ferry_batch_size_count",
        "ferry_queue_capacity_requests",
        "ferry_inflight_requests",
        "ferry_model_ready",
        "ferry_model_default_version",
        "ferry_auth_denied_requests_total",
        "ferry_rate_limited_requests_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert needle in exprs, needle


def test_dashboard_uses_only_its_variables() -> None:
    defined = {v["name"] for v in load_dashboard()["templating"]["list"]}
    for expr in dashboard_exprs() + variable_queries():
        used = set(VARIABLE.findall(expr))
        assert used <= defined | GRAFANA_VARIABLES, (expr, used - defined - GRAFANA_VARIABLES)
        assert "$datasource" not in expr


def test_dashboard_rates_use_the_rate_interval() -> None:
    # A fixed window would be too short for a 15 s scrape interval, or hide detail.
    for expr in dashboard_exprs():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr


def test_every_dashboard_metric_is_documented() -> None:
    names = {name for expr in dashboard_exprs() + variable_queries() for name in METRIC_NAME.findall(expr)}
    assert "ferry_request_duration_seconds_bucket" in names
    assert undocumented(names) == set()


# -- the alert rules -------------------------------------------------------------------


def test_alert_rules_parse_with_the_five_alerts() -> None:
    rules = alert_rules()
    assert [rule["alert"] for rule in rules] == [
        "FerryHighErrorRatio",
        "FerryLatencyP99OverSLO",
        "FerryQueueSaturation",
        "FerryModelNotReady",
        "FerryNoProductionTraffic",
    ]
    assert {rule["alert"] for rule in rules} == ALERT_NAMES


def test_alert_rules_have_severity_and_annotations() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        for annotation in ("summary", "description"):
            assert "{{ $labels.model }}" in rule["annotations"][annotation], (rule["alert"], annotation)


@pytest.mark.parametrize(
    ("alert", "needles"),
    [
        ("FerryHighErrorRatio", ['code=~"5.."', "[5m]", "> 0.05"]),
        ("FerryLatencyP99OverSLO", ["histogram_quantile(0.99", "ferry_request_duration_seconds_bucket", "> 0.5"]),
        ("FerryQueueSaturation", ["ferry_queued_requests / ferry_queue_capacity_requests", "> 0.8"]),
        ("FerryModelNotReady", ["ferry_model_ready", "== 0"]),
        ("FerryNoProductionTraffic", ["ferry_model_default_version", "unless on (model)", "[15m]"]),
    ],
)
def test_alert_expressions(alert: str, needles: list[str]) -> None:
    expr = next(rule["expr"] for rule in alert_rules() if rule["alert"] == alert)
    for needle in needles:
        assert needle in expr, (alert, needle)


def test_alert_durations() -> None:
    durations = {rule["alert"]: rule["for"] for rule in alert_rules()}
    assert durations["FerryHighErrorRatio"] == "5m"
    assert durations["FerryQueueSaturation"] == "2m"
    assert durations["FerryModelNotReady"] == "5m"


def test_every_alert_metric_is_documented() -> None:
    names = {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert {"ferry_requests_total", "ferry_model_default_version"} <= names
    assert undocumented(names) == set()


def test_every_alert_has_promtool_unit_tests() -> None:
    tests = load_yaml(ALERT_TESTS)
    assert tests["rule_files"] == [ALERTS.name]
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    assert tested == ALERT_NAMES
    # Each alert is expected to fire somewhere, and not to fire somewhere else.
    for name in ALERT_NAMES:
        cases = [case for test in tests["tests"] for case in test["alert_rule_test"] if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in cases), name
        assert any(not case["exp_alerts"] for case in cases), name


def test_metric_name_check_knows_histograms() -> None:
    # The suffixes are only stripped from documented histograms.
    assert undocumented({"ferry_batch_size_bucket", "ferry_queue_duration_seconds_sum"}) == set()
    assert undocumented({"ferry_requests_total_bucket", "ferry_no_such_metric"}) == {
        "ferry_requests_total_bucket",
        "ferry_no_such_metric",
    }


# -- the example Prometheus configuration ----------------------------------------------


def test_example_prometheus_config() -> None:
    config = load_yaml(PROMETHEUS)
    assert config["rule_files"] == [ALERTS.name]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "ferry"
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/ferry-key"}
    assert job["static_configs"][0]["targets"]
