"""Drift of the good parts' score distributions, per line and product type and model version.

    monitor = DriftMonitor(settings.drift)
    for event in monitor.observe_verdict(verdict):       # every InspectionVerdict of qc.inspections.v1
        sink.write(drift_event_point(event, {"plant": plant}))
        publish(drift_record(event, plant))              # Avro, protos/avro/quality_drift.avsc
    monitor.state("line-1")                              # [DriftState]

    tracker = drift_from_history(line, product, rows)    # rows from diffqc.store.inspections.drift_history

The tests (``stats``: KS, PSI), the trackers (``monitor``), InfluxDB points (``sink``), Avro
records (``avro``); docs/drift.md explains them and gives the measured rates.
"""

from diffqc.drift.avro import DRIFT_SCHEMA, drift_record
from diffqc.drift.monitor import (
    RECALIBRATE,
    RETRAIN,
    SCORE,
    DriftCheck,
    DriftEvent,
    DriftMonitor,
    DriftSample,
    DriftState,
    DriftTracker,
    drift_from_history,
    recommendation,
)
from diffqc.drift.sink import drift_event_point
from diffqc.drift.stats import QuantityTest, compare, ks_test, psi

__all__ = [
    "DRIFT_SCHEMA",
    "RECALIBRATE",
    "RETRAIN",
    "SCORE",
    "DriftCheck",
    "DriftEvent",
    "DriftMonitor",
    "DriftSample",
    "DriftState",
    "DriftTracker",
    "QuantityTest",
    "compare",
    "drift_event_point",
    "drift_from_history",
    "drift_record",
    "ks_test",
    "psi",
    "recommendation",
]
