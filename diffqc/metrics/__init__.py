"""Anomaly-detection metrics on numpy arrays (no torch): image-level and pixel-level."""

from diffqc.metrics.evaluate import METRIC_KEYS, evaluate_scores
from diffqc.metrics.image import F1Max, f1_max, fpr_at_recall, image_auroc, recall_at_fpr
from diffqc.metrics.pixel import ProCurve, pixel_auroc, pro_curve, pro_score

__all__ = [
    "METRIC_KEYS",
    "F1Max",
    "ProCurve",
    "evaluate_scores",
    "f1_max",
    "fpr_at_recall",
    "image_auroc",
    "pixel_auroc",
    "pro_curve",
    "pro_score",
    "recall_at_fpr",
]
