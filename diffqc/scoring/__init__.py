"""Scoring: from the detector's result to the verdict the plant acts on.

    scorer = Scorer(settings.scoring, engine, blobs)
    verdict = scorer.score(inference_result)      # a diffqc.v1 InspectionVerdict, already recorded
    make_sink(settings).write(point_of(verdict))  # its score point (the scoring service: its own consumer)

The process component (``diffqc.core.process``), the threshold of the model version that
produced the scores (``model_versions``), defect regions in original frame pixels and a heatmap
PNG (``regions``), the idempotent inspection row (``diffqc.store.inspections``), and one
``anomaly_score`` point per verdict in InfluxDB or a line-protocol file (``points``, ``sink``).
A frame that a stage dead-lettered becomes a NOT_INSPECTED verdict instead (``not_inspected``).
"""

from diffqc.scoring.points import point_of
from diffqc.scoring.regions import content_regions, heatmap_png, map_geometry, to_original
from diffqc.scoring.scorer import (
    ModelThreshold,
    Scorer,
    ScoringError,
    inspection_id,
    verdict_message,
)
from diffqc.scoring.sink import InfluxScoreSink, LineProtocolFileSink, ScoreSink, make_sink, score_point

__all__ = [
    "InfluxScoreSink",
    "LineProtocolFileSink",
    "ModelThreshold",
    "ScoreSink",
    "Scorer",
    "ScoringError",
    "content_regions",
    "heatmap_png",
    "inspection_id",
    "make_sink",
    "map_geometry",
    "point_of",
    "score_point",
    "to_original",
    "verdict_message",
]
