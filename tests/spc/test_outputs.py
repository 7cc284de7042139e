"""What leaves the SPC library: InfluxDB points, Avro records of quality.spc, the chart picture."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import fastavro
import numpy as np
import pytest
from PIL import Image

from diffqc.infra.timeseries import export_series
from diffqc.scoring.sink import InfluxScoreSink
from diffqc.settings import InfluxSettings, SpcSettings
from diffqc.spc import SPC_SCHEMA, SpcSignal, chart_from_history, signal_record, spc_signal_point
from diffqc.spc.render import SIGNAL_COLOR, render_chart

T0 = datetime(2026, 11, 2, 6, 0, 0, 123456, tzinfo=UTC)


def signal(**changes) -> SpcSignal:
    fields = dict(
        line_id="line-1",
        product_type="pcb",
        rule="nelson1",
        detail="1 point beyond 3 sigma",
        value=0.93,
        center_line=0.5,
        ucl=0.8,
        lcl=0.2,
        time=T0,
        sample_index=42,
        lot="lot-7",
        inspection_id="insp-42",
    )
    return SpcSignal(**{**fields, **changes})


def chart(scores, rules=None):
    rows = [(T0 + timedelta(seconds=i), float(s), "pass", None) for i, s in enumerate(scores)]
    settings = SpcSettings(baseline_size=30, **({"rules": rules} if rules is not None else {}))
    return chart_from_history("line-1", "pcb", rows, settings)


def test_the_point_carries_the_tags_and_limits():
    line = spc_signal_point(signal(), {"plant": "plant-a", "station": ""}).to_line_protocol()
    assert line == (
        "spc_signal,line=line-1,plant=plant-a,product_type=pcb,rule=nelson1 center_line=0.5,lcl=0.2,"
        "sample_index=42i,ucl=0.8,value=0.93 1793599200123456000"
    )


def test_signals_are_stored_in_the_time_series_store_at_the_time_of_their_point(timeseries_url):
    sink = InfluxScoreSink(InfluxSettings(url=timeseries_url, token="test"))
    try:
        for s in (signal(), signal(rule="nelson5", value=0.85, time=T0 + timedelta(seconds=1)), signal()):
            sink.write(spc_signal_point(s, {"plant": "plant-a"}))
    finally:
        sink.close()
    stored = {}
    for field in ("value", "ucl", "lcl", "center_line"):
        for series in export_series(timeseries_url, "spc_signal", field):
            if series["metric"].get("line") == "line-1":
                stored[(field, series["metric"]["rule"])] = (series["values"], series["metric"], series["timestamps"])
    # Written twice at one timestamp: InfluxDB keeps one point; victoria-metrics (no dedup) exports both.
    assert set(stored[("value", "nelson1")][0]) == {0.93}
    assert set(stored[("value", "nelson1")][2]) == {int(T0.timestamp() * 1000)}
    assert stored[("value", "nelson5")][0] == [0.85]
    assert stored[("value", "nelson5")][2] == [int(T0.timestamp() * 1000) + 1000]
    assert set(stored[("ucl", "nelson1")][0]) == {0.8} and stored[("lcl", "nelson5")][0] == [0.2]
    assert set(stored[("center_line", "nelson1")][0]) == {0.5}
    assert stored[("value", "nelson1")][1]["plant"] == "plant-a"
    assert stored[("value", "nelson1")][1]["product_type"] == "pcb"


def test_the_avro_schema_documents_every_field():
    schema = json.loads(SPC_SCHEMA.read_text())
    assert schema["namespace"] == "diffqc.quality" and schema["doc"]
    assert [f["name"] for f in schema["fields"] if not f.get("doc")] == []
    [detected_at] = [f for f in schema["fields"] if f["name"] == "detected_at"]
    assert detected_at["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert set(signal_record(signal())) == {f["name"] for f in schema["fields"]}


def test_a_signal_round_trips_through_avro_binary():
    parsed = fastavro.parse_schema(json.loads(SPC_SCHEMA.read_text()))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, signal_record(signal(lot=None), plant_id="plant-a"))
    buffer.seek(0)
    record = fastavro.schemaless_reader(buffer, parsed)
    assert record["detected_at"] == T0.replace(microsecond=123000)  # milliseconds
    assert record["signal_id"] == "line-1/pcb/nelson1/42"
    assert (record["plant_id"], record["lot"], record["inspection_id"]) == ("plant-a", None, "insp-42")
    assert (record["value"], record["ucl"], record["lcl"], record["center_line"]) == (0.93, 0.8, 0.2, 0.5)


def test_an_incomplete_record_is_refused_by_the_schema():
    parsed = fastavro.parse_schema(json.loads(SPC_SCHEMA.read_text()))
    record = signal_record(signal())
    del record["rule"]
    with pytest.raises(ValueError, match="rule"):
        fastavro.schemaless_writer(io.BytesIO(), parsed, record)


def _signal_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    target = np.array([int(SIGNAL_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).sum(axis=2) < 40).sum())


def test_the_picture_marks_the_signals(tmp_path):
    scores = 0.5 + 0.1 * np.random.default_rng(4).standard_normal(90)
    scores[60:] += 0.25
    signalled = chart(scores)
    assert signalled.signals
    quiet = chart(scores, rules=[])
    assert not quiet.signals
    marked = render_chart(signalled, tmp_path / "signalled.png")
    plain = render_chart(quiet, tmp_path / "quiet.png")
    assert Image.open(marked).size == (1000, 900)  # individuals, moving range, EWMA, CUSUM
    assert _signal_pixels(marked) > 200
    assert _signal_pixels(plain) == 0


def test_a_chart_without_points_cannot_be_drawn(tmp_path):
    with pytest.raises(ValueError, match="has no points to draw"):
        render_chart(chart([]), tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
