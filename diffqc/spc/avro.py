"""SPC signals as Avro records of ``protos/avro/quality_spc.avsc`` (Kafka topic quality.spc).

The bridge encodes them with the serializer helpers of diffqc.contracts.avro:
``AvroTopic(client, QUALITY_SPC, load_schema(SPC_SCHEMA)).encode(signal_record(signal, plant_id))``.
"""

from __future__ import annotations

from diffqc.contracts.avro import SCHEMA_DIR
from diffqc.spc.monitor import SpcSignal

SPC_SCHEMA = SCHEMA_DIR / "quality_spc.avsc"


def signal_record(signal: SpcSignal, plant_id: str | None = None) -> dict:
    """The record of one signal; ``detected_at`` stays a timezone-aware datetime (fastavro converts it)."""
    return {
        "signal_id": signal.signal_id,
        "plant_id": plant_id or None,
        "line_id": signal.line_id,
        "product_type": signal.product_type,
        "rule": signal.rule,
        "detail": signal.detail,
        "value": float(signal.value),
        "center_line": float(signal.center_line),
        "ucl": float(signal.ucl),
        "lcl": float(signal.lcl),
        "sample_index": int(signal.sample_index),
        "lot": signal.lot,
        "inspection_id": signal.inspection_id,
        "detected_at": signal.time,
    }
