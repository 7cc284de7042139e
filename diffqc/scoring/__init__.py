"""Scoring: from the detector's result to the verdict the plant acts on.

    scorer = Scorer(settings.scoring, engine, blobs, make_sink(settings))
    verdict = scorer.score(inference_result)      # a diffqc.v1 InspectionVerdict, already recorded

Fusion with the process-context deviation (``fusion``), the threshold of the model version that
produced the scores (``model_versions``), defect regions in original frame pixels and a heatmap
PNG (``regions``), the idempotent inspection row (``diffqc.store.inspections``), and one
``anomaly_score`` point per inspection in InfluxDB or a line-protocol file (``sink``).
"""

from diffqc.scoring.fusion import ProcessDeviation, fuse, parameter_deviation, process_deviation
from diffqc.scoring.regions import content_regions, heatmap_png, map_geometry, to_original
from diffqc.scoring.scorer import (
    ModelThreshold,
    Scorer,
    ScoringError,
    artifact_registration,
    inspection_id,
    point_for,
    verdict_message,
)
from diffqc.scoring.sink import InfluxScoreSink, LineProtocolFileSink, ScoreSink, make_sink, score_point

__all__ = [
    "InfluxScoreSink", "LineProtocolFileSink", "ModelThreshold", "ProcessDeviation", "ScoreSink", "Scorer",
    "ScoringError", "artifact_registration", "content_regions", "fuse", "heatmap_png", "inspection_id",
    "make_sink", "map_geometry", "parameter_deviation", "point_for", "process_deviation", "score_point",
    "to_original", "verdict_message",
]
