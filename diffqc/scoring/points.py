"""The score point of a published verdict: what the time-series consumer writes for SPC dashboards.

Scoring publishes every verdict on qc.inspections.v1 (the gRPC path and the stream alike); a consumer
group of its own turns each into one ``anomaly_score`` point (diffqc.scoring.sink). Kafka is the
outbox: while InfluxDB is down or refuses the token, the points wait in the topic (the stage pauses and
retries) and verdicts and alerts flow on. The point's tags and timestamp come from the frame, so a
redelivered verdict writes the same point again. A part that was not inspected (NOT_INSPECTED) has
no score and gets no point: a 0 would chart as a perfect part. Such parts are counted by scoring's
``diffqc_dead_letters_total{outcome="not_inspected"}`` and listed by the gateway.
"""

from __future__ import annotations

from influxdb_client import Point

from diffqc.core import clock
from diffqc.scoring.sink import ScoreSink, score_point
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_NOT_INSPECTED, InspectionVerdict


def point_of(verdict: InspectionVerdict) -> Point:
    """The verdict's point; timestamp = capture time (else ingestion, else decision)."""
    frame = verdict.frame
    tags = {
        "plant": frame.plant_id,
        "line": frame.line_id,
        "station": frame.station_id,
        "camera": frame.camera_id,
        "product_type": frame.product_type,
        "model_version": verdict.model.version,
    }
    when = (
        clock.from_timestamp(frame.capture_time)
        or clock.from_timestamp(frame.ingest_time)
        or clock.from_timestamp(verdict.decided_at)
        or clock.now()
    )
    return score_point(
        tags,
        dict(verdict.component_scores),
        verdict.score,
        verdict.threshold,
        verdict.verdict == VERDICT_DEFECT,
        verdict.latency.ToNanoseconds() / 1e6,
        when,
    )


def write_point(sink: ScoreSink, verdict: InspectionVerdict) -> None:
    """Write the verdict's point; none for a part that was not inspected (module doc)."""
    if verdict.verdict != VERDICT_NOT_INSPECTED:
        sink.write(point_of(verdict))
