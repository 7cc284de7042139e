"""Evaluate a detector on an MVTec-layout test split: the standard metrics plus latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffqc.data.images import read_image
from diffqc.data.mvtec import Sample, has_masks, list_samples, sample_mask
from diffqc.detector.detector import Detector
from diffqc.metrics import F1Max, evaluate_scores, f1_max

REPORT_KEYS = (
    "image_auroc",
    "pixel_auroc",
    "pro",
    "f1_max",
    "recall_at_fpr_3pct",
    "fpr_at_recall_98pct",
    "latency_ms_p50",
)


@dataclass
class Evaluation:
    metrics: dict[str, float | None]
    samples: list[Sample]
    scores: np.ndarray
    components: np.ndarray
    latencies_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, float | None]:
        return {k: self.metrics.get(k) for k in REPORT_KEYS}


def evaluate_detector(
    detector: Detector,
    root: str | Path,
    product: str | None = None,
    *,
    steps: int | None = None,
    progress: Callable[[int], None] | None = None,
    keep_maps: bool = True,
) -> Evaluation:
    """Score every test image one at a time (so latency is per image) and compute the metrics.

    Pixel metrics need masks for every defective image; without them they are None, with a note.
    """
    product = detector.resolve_product(product)
    samples = list_samples(root, "test")
    pixel = keep_maps and has_masks(samples)
    scores, comps, maps, masks, lat = [], [], [], [], []
    for s in samples:
        img = read_image(s.path)
        batch = img.transpose(2, 0, 1)[None]
        t0 = time.perf_counter()
        result = detector.predict(batch, product, steps=steps, names=[str(s.path)])
        lat.append((time.perf_counter() - t0) * 1000)
        scores.append(float(result.score[0]))
        comps.append(result.components[0])
        if pixel:
            maps.append(result.anomaly_map[0, 0])
            masks.append(sample_mask(s))
        if progress:
            progress(1)
    labels = np.array([s.label for s in samples])
    metrics = dict(evaluate_scores(np.array(scores), labels, maps if pixel else None, masks if pixel else None))
    metrics["latency_ms_p50"] = float(np.median(lat)) if lat else None
    notes = []
    if not pixel:
        notes.append("pixel metrics omitted: the data set has no defect masks (image labels only)")
    return Evaluation(metrics, samples, np.array(scores), np.array(comps), lat, notes)


def f1_threshold(scores: np.ndarray, labels: np.ndarray) -> F1Max:
    """(F1-max, its threshold) from labelled scores: the calibration used when defects are known."""
    f1, threshold = f1_max(scores, labels)
    return F1Max(float(f1), float(threshold))
