"""Drift events as Avro records of ``protos/avro/quality_drift.avsc`` (Kafka topic quality.drift).

``AvroTopic(client, QUALITY_DRIFT, load_schema(DRIFT_SCHEMA)).encode(drift_record(event, plant_id))``.
quality.spc keeps its own schema (one record per SPC rule signal): a drift event is another message.
"""

from __future__ import annotations

from diffqc.contracts.avro import SCHEMA_DIR
from diffqc.drift.monitor import DriftEvent

DRIFT_SCHEMA = SCHEMA_DIR / "quality_drift.avsc"


def drift_record(event: DriftEvent, plant_id: str | None = None) -> dict:
    """The record of one event; ``detected_at`` stays a timezone-aware datetime (fastavro converts it)."""
    return {
        "event_id": event.event_id,
        "plant_id": plant_id or None,
        "line_id": event.line_id,
        "product_type": event.product_type,
        "model_version": event.model_version,
        "quantity": event.quantity,
        "quantities": list(event.quantities),
        "ks_statistic": float(event.ks_statistic),
        "p_value": float(event.p_value),
        "psi": float(event.psi),
        "reference_size": int(event.reference_size),
        "window_size": int(event.window_size),
        "sample_index": int(event.sample_index),
        "recommendation": event.recommendation,
        "inspection_id": event.inspection_id,
        "detected_at": event.time,
    }
