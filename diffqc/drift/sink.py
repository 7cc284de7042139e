"""Drift events as InfluxDB points, next to the SPC points of diffqc/spc/sink.py.

Measurement ``drift_event``; tags plant, line, product_type, model_version, quantity,
recommendation; fields ks_statistic, p_value, psi, reference_size, window_size, sample_index;
timestamp = the capture time of the part whose arrival ran the check. The same event written
again (a redelivered verdict) overwrites the same point.
"""

from __future__ import annotations

from influxdb_client import Point, WritePrecision

from diffqc.drift.monitor import DriftEvent

MEASUREMENT = "drift_event"


def drift_event_point(event: DriftEvent, tags: dict[str, str] | None = None) -> Point:
    """``tags`` adds e.g. plant; the others come from the event. Empty tags are left out (InfluxDB refuses them)."""
    merged = {
        **(tags or {}),
        "line": event.line_id,
        "product_type": event.product_type,
        "model_version": event.model_version or "",
        "quantity": event.quantity,
        "recommendation": event.recommendation,
    }
    point = Point(MEASUREMENT)
    for name, value in sorted(merged.items()):
        if value:
            point.tag(name, value)
    point.field("ks_statistic", float(event.ks_statistic)).field("p_value", float(event.p_value))
    point.field("psi", float(event.psi)).field("reference_size", int(event.reference_size))
    point.field("window_size", int(event.window_size)).field("sample_index", int(event.sample_index))
    return point.time(event.time, WritePrecision.NS)
