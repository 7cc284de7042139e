"""The Grafana SPC dashboard reads only what the platform writes: every Flux query names measurements,
fields and tags that diffqc's own InfluxDB points carry (built here by the real point builders)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from diffqc.core.components import COMPONENTS
from diffqc.scoring.sink import TAGS, score_point
from diffqc.spc import IndividualsChart, SpcSignal, spc_limits_point, spc_signal_point

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "diffqc-spc.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"
FLUX_COLUMNS = {"_time", "_value", "_field", "_measurement", "_start", "_stop"}


def _schema(point) -> tuple[str, set[str], set[str]]:
    """(measurement, tag names, field names) of an influxdb-client Point, from its line protocol."""
    head, fields, _time = point.to_line_protocol().rsplit(" ", 2)
    measurement, *tags = head.split(",")
    return measurement, {t.split("=")[0] for t in tags}, {f.split("=")[0] for f in fields.split(",")}


def _written() -> dict[str, tuple[set[str], set[str]]]:
    now = datetime.now(UTC)
    score = score_point(dict.fromkeys(TAGS, "x"), dict.fromkeys(COMPONENTS, 0.5), 1.0, 2.0, False, 3.0, now)
    signal = spc_signal_point(
        SpcSignal("L1", "pcb", "nelson1", "d", 1.0, 0.0, 3.0, -3.0, now, 7, "LOT"), {"plant": "P1"}
    )
    limits = spc_limits_point("L1", "pcb", "v1", IndividualsChart(1.0, 0.1, 0.11, 30), now, {"plant": "P1"})
    return {m: (tags, fields) for m, tags, fields in map(_schema, (score, signal, limits))}


def _queries(dashboard: dict) -> list[tuple[str, str]]:
    found = [(f"panel {p['title']!r}", t["query"]) for p in dashboard["panels"] for t in p["targets"]]
    found += [(f"variable {v['name']!r}", v["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    found += [(f"annotation {a['name']!r}", a["target"]["query"]) for a in dashboard["annotations"]["list"]]
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_datasource_file_provisions_the_flux_datasource_the_panels_use(dashboard):
    config = yaml.safe_load(DATASOURCE.read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "Flux"
    # Connection details come from Grafana's environment (docker-compose.yml sets them).
    assert (
        source["url"],
        source["jsonData"]["organization"],
        source["jsonData"]["defaultBucket"],
        source["secureJsonData"]["token"],
    ) == ("$INFLUX_URL", "$INFLUX_ORG", "$INFLUX_BUCKET", "$INFLUX_TOKEN")
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used == {source["uid"]}


def test_every_query_reads_only_measurements_fields_and_tags_the_platform_writes(dashboard):
    written = _written()
    assert set(written) == {"anomaly_score", "spc_signal", "spc_limits"}
    seen = set()
    for where, query in _queries(dashboard):
        measurements = set(re.findall(r'(?:r\._measurement == |measurement: )"([^"]+)"', query))
        assert len(measurements) == 1, f"{where} must name one measurement: {query}"
        (measurement,) = measurements
        assert measurement in written, f"{where} reads {measurement!r}, which nothing writes"
        tags, fields = written[measurement]
        seen.add(measurement)
        named_fields = set(re.findall(r'r\._field == "([^"]+)"', query))
        for group in re.findall(r"contains\(value: r\._field, set: \[([^\]]*)\]\)", query):
            named_fields |= set(re.findall(r'"([^"]+)"', group))
        assert named_fields <= fields, f"{where} reads fields {named_fields - fields} not written to {measurement}"
        columns = set(re.findall(r"\br\.(\w+)", query)) | set(re.findall(r'tag: "(\w+)"', query))
        for listed in re.findall(r"(?:columns|rowKey|columnKey): \[([^\]]*)\]", query):
            columns |= set(re.findall(r'"([^"]+)"', listed))
        columns -= FLUX_COLUMNS | fields  # after a pivot, fields are columns
        assert columns <= tags, f"{where} uses tags {columns - tags} that {measurement} points do not carry"
    assert seen == set(written)  # the dashboard shows both the scores and the SPC signals


def test_every_template_variable_a_query_uses_is_defined(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for where, query in _queries(dashboard):
        used = set(re.findall(r"\$\{(\w+)(?::\w+)?\}", query))
        assert used <= defined, f"{where} uses undefined variables {used - defined}"
    assert {"line", "product_type"} <= defined
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
