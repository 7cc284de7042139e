"""The Prometheus metric names diffqc exports, and the names a PromQL expression reads: so a test can
prove that no dashboard panel or alert names a metric that nothing exports (a renamed metric would
leave a panel empty or an alert that never fires)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
# The names a family of each type is exposed under (prometheus-client; OpenMetrics adds _created).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
# PromQL words that read like metric names but are none: operators, modifiers, literals.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
# Label lists, which name labels: ``by (group, topic)``, ``on (namespace)``, ``group_left (pod)``.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_modules() -> list[str]:
    """Every diffqc and services module that registers metrics (the modules that use prometheus-client)."""
    found = []
    for package in ("diffqc", "services"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "prometheus_client" in path.read_text():
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def exported_metric_names() -> set[str]:
    """The sample names diffqc processes can expose: every family in the default registry once the modules
    that define metrics are imported, with its type's suffixes (a labelled metric has no samples until used,
    so the names come from the families), and the process_* and python_* collectors'."""
    for module in metric_modules():
        importlib.import_module(module)  # a metric is registered where it is defined
    return {family.name + suffix for family in REGISTRY.collect() for suffix in _SUFFIXES[family.type]}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's $variables allowed in matchers and ranges)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, which may look like anything
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors and subqueries
    expr = _LABEL_LISTS.sub("", expr)
    # An identifier followed by "(" is a function or aggregation; numbers do not start with a letter.
    words = re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return set(words) - _KEYWORDS
