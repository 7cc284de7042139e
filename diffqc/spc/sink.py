"""SPC signals and limits as InfluxDB points, next to the score points of diffqc/scoring/sink.py.

Measurement ``spc_signal``; tags plant, line, product_type, rule (plus any other non-empty tag
given); fields value, ucl, lcl, center_line, sample_index; timestamp = the time of the point that
fired. The same point firing the same rule again overwrites the same InfluxDB point.

Measurement ``spc_limits``: the limits in force at every monitored point (tags plant, line,
product_type, model_version; fields center_line, ucl, lcl), so a dashboard draws them as lines
that step where a chart was re-based or a new model version started new limits.
"""

from __future__ import annotations

from datetime import datetime

from influxdb_client import Point, WritePrecision

from diffqc.spc.charts import IndividualsChart
from diffqc.spc.monitor import SpcSignal

MEASUREMENT = "spc_signal"
LIMITS_MEASUREMENT = "spc_limits"


def _tagged(measurement: str, tags: dict[str, str]) -> Point:
    point = Point(measurement)
    for name, value in sorted(tags.items()):
        if value:  # InfluxDB refuses empty tag values
            point.tag(name, value)
    return point


def spc_signal_point(signal: SpcSignal, tags: dict[str, str] | None = None) -> Point:
    """``tags`` adds e.g. plant/station; line, product_type and rule always come from the signal."""
    merged = {**(tags or {}), "line": signal.line_id, "product_type": signal.product_type, "rule": signal.rule}
    point = _tagged(MEASUREMENT, merged)
    point.field("value", float(signal.value)).field("ucl", float(signal.ucl)).field("lcl", float(signal.lcl))
    point.field("center_line", float(signal.center_line)).field("sample_index", int(signal.sample_index))
    return point.time(signal.time, WritePrecision.NS)


def spc_limits_point(
    line_id: str,
    product_type: str,
    model_version: str | None,
    limits: IndividualsChart,
    time: datetime,
    tags: dict[str, str] | None = None,
) -> Point:
    """The limits a monitored point was judged against, at that point's time."""
    merged = {**(tags or {}), "line": line_id, "product_type": product_type, "model_version": model_version or ""}
    point = _tagged(LIMITS_MEASUREMENT, merged)
    point.field("center_line", limits.center_line).field("ucl", limits.ucl).field("lcl", limits.lcl)
    return point.time(time, WritePrecision.NS)
