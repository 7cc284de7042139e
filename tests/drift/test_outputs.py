"""What leaves the drift library: the Avro record of quality.drift and the InfluxDB point."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np

from diffqc.drift import DRIFT_SCHEMA, DriftTracker, drift_event_point, drift_record
from diffqc.settings import DriftSettings
from tests.drift.streams import good_parts


def _event():
    rng = np.random.default_rng(0)
    tracker = DriftTracker("L1", "pcb", DriftSettings())
    tracker.extend(good_parts(rng, 450))
    [event] = tracker.extend(good_parts(rng, 400, start=450, shift=1.5))
    return event


def test_the_record_round_trips_through_the_schema():
    event = _event()
    schema = fastavro.parse_schema(json.loads(DRIFT_SCHEMA.read_text()))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, drift_record(event, "P1"))
    buffer.seek(0)
    record = fastavro.schemaless_reader(buffer, schema)
    assert record["event_id"] == event.event_id and record["plant_id"] == "P1"
    assert record["quantity"] == event.quantity and record["quantities"] == list(event.quantities)
    assert record["recommendation"] == "retrain" and record["model_version"] == "1"
    assert record["detected_at"] == event.time and record["window_size"] == 200
    assert drift_record(event)["plant_id"] is None


def test_the_influx_point_tags_the_line_and_the_quantity():
    event = _event()
    line = drift_event_point(event, {"plant": "P1", "station": ""}).to_line_protocol()
    assert line.startswith(
        "drift_event,line=L1,model_version=1,plant=P1,product_type=pcb,"
        f"quantity={event.quantity},recommendation=retrain "
    )
    assert f"sample_index={event.sample_index}i" in line and "psi=" in line and "p_value=" in line
    assert line.endswith(str(int(event.time.timestamp() * 1e9)))


def test_every_field_of_the_schema_has_a_doc():
    schema = json.loads(DRIFT_SCHEMA.read_text())
    assert schema["namespace"] == "diffqc.quality" and "quality.drift" in schema["doc"]
    assert [f["name"] for f in schema["fields"] if not f.get("doc")] == []
