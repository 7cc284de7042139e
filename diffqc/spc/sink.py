"""SPC signals as InfluxDB points, next to the score points of diffqc/scoring/sink.py.

Measurement ``spc_signal``; tags plant, line, product_type, rule (plus any other non-empty tag
given); fields value, ucl, lcl, center_line, sample_index; timestamp = the time of the point that
fired. The same point firing the same rule again overwrites the same InfluxDB point.
"""

from __future__ import annotations

from influxdb_client import Point, WritePrecision

from diffqc.spc.monitor import SpcSignal

MEASUREMENT = "spc_signal"


def spc_signal_point(signal: SpcSignal, tags: dict[str, str] | None = None) -> Point:
    """``tags`` adds e.g. plant/station; line, product_type and rule always come from the signal."""
    merged = {**(tags or {}), "line": signal.line_id, "product_type": signal.product_type, "rule": signal.rule}
    point = Point(MEASUREMENT)
    for name, value in sorted(merged.items()):
        if value:  # InfluxDB refuses empty tag values
            point.tag(name, value)
    point.field("value", float(signal.value)).field("ucl", float(signal.ucl)).field("lcl", float(signal.lcl))
    point.field("center_line", float(signal.center_line)).field("sample_index", int(signal.sample_index))
    return point.time(signal.time, WritePrecision.NS)
