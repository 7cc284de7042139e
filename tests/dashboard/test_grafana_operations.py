"""The Grafana operations dashboard reads only what the platform exports: every PromQL expression of its
panels and variables names metrics that diffqc's code registers (under the names Prometheus scrapes:
_total, _bucket ...), so renaming a metric cannot silently empty a panel; the chart's alerts get the
same check in tests/deploy/test_chart.py. Both are evaluated by a real PromQL engine too (the test
stack's VictoriaMetrics, whose MetricsQL accepts PromQL; no Prometheus runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.manifests import CHART, by_kind, documents, load_values, render
from tests.helpers.prometheus import exported_metric_names, promql_metric_names

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "diffqc-operations.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
# What the issue asks the dashboard to show, by the metric each panel reads.
SHOWN = {
    "diffqc_consumer_lag",
    "diffqc_messages_total",
    "diffqc_dead_letters_total",
    "diffqc_consumer_paused",
    "diffqc_message_handle_seconds_bucket",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "diffqc_verdicts_total",
    "diffqc_blob_volume_used_ratio",
    "diffqc_credentials_refused_total",
    "diffqc_canary_rollbacks_total",
}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable (``label_values(metric, label)``: the metric)."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in _panels(dashboard) for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            label_values = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            found.append((f"variable {variable['name']!r}", label_values[1] if label_values else query))
    return found


def test_the_datasource_file_provisions_the_prometheus_datasource_the_panels_use(dashboard):
    config = yaml.safe_load(DATASOURCE.read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "$PROMETHEUS_URL"  # from Grafana's environment
    assert not source["isDefault"]  # the SPC dashboard's InfluxDB stays the default
    used = {p["datasource"]["uid"] for p in _panels(dashboard)}
    used |= {t["datasource"]["uid"] for p in _panels(dashboard) for t in p["targets"]}
    used |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"] if v["type"] == "query"}
    assert used == {source["uid"]}


def test_every_expression_reads_only_metrics_the_code_exports(dashboard):
    exported = exported_metric_names()
    read = set()
    for where, expr in _expressions(dashboard):
        named = promql_metric_names(expr)
        assert named, f"{where} reads no metric: {expr}"
        assert named <= exported, f"{where} reads {sorted(named - exported)}, which nothing exports"
        read |= named
    assert read >= SHOWN, f"the dashboard does not show {sorted(SHOWN - read)}"


def test_every_variable_an_expression_uses_is_defined_and_panel_ids_are_unique(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for where, expr in _expressions(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr)) - {"__rate_interval", "__range", "__interval"}
        assert used <= defined, f"{where} uses undefined variables {used - defined}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert dashboard["uid"] == "diffqc-operations"


def _alert_expressions() -> list[tuple[str, str]]:
    [rule] = by_kind(documents(render(load_values(CHART / "ci" / "plant-gpu-values.yaml"))), "PrometheusRule").values()
    return [(f"alert {r['alert']}", r["expr"]) for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_panel_and_alert_expression_is_evaluated_by_a_promql_engine(dashboard, timeseries_url):
    # Grafana's variables as Grafana substitutes them before it sends a query.
    grafana = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s", "$group": ".*"}
    for where, expr in _expressions(dashboard) + _alert_expressions():
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        response = httpx.get(f"{timeseries_url}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200 and response.json()["status"] == "success", f"{where}: {response.text}"
