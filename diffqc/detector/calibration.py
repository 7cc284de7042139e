"""Per-product calibration on held-out good images: map normalization, score scale, threshold.

The held-out good images are split in two: part A measures the per-pixel (or global) statistics
that normalize the evidence maps; part B, which those statistics have not seen, measures the
image-level score distribution and sets the threshold. Measuring both on the same images would
make good images look better than new ones and the threshold too low.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from diffqc.detector.scoring import ProcessStats

# Smallest spread allowed for an image-level component (in its own units): a component that is
# almost always 0 on good images (concentration) must not turn the first tiny blob into z = 100.
COMPONENT_STD_FLOOR = 0.25


@dataclass
class Calibration:
    region_level: float = 0.0
    comp_mean: list[float] = field(default_factory=lambda: [0.0] * 4)
    comp_std: list[float] = field(default_factory=lambda: [1.0] * 4)
    threshold: float = 0.0
    method: str = "fpr"  # fpr: FPR target on held-out good images; f1_max: labelled defects
    target_fpr: float = 0.03
    calibration_fpr: float | None = None
    n_normalization: int = 0
    n_calibration: int = 0
    process: ProcessStats = field(default_factory=ProcessStats)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        d = dict(d)
        d["process"] = ProcessStats(**d.get("process", {}))
        return cls(**d)


def split_holdout(n: int, fraction: float, minimum: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices); at least ``minimum`` held out and one image to train on."""
    n_hold = max(minimum, round(fraction * n))
    if n - n_hold < 1:
        raise ValueError(f"need at least {minimum + 1} good images (train + held out), got {n}")
    perm = rng.permutation(n)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def split_calibration(held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out indices -> (A: map normalization, B: score calibration)."""
    half = math.ceil(len(held_out) / 2)
    return held_out[:half], held_out[half:]


def fpr_threshold(good_scores: np.ndarray, target_fpr: float) -> tuple[float, float]:
    """Lowest threshold (verdict: score > threshold) with FPR <= target on these good scores."""
    s = np.sort(np.asarray(good_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no good images to calibrate the threshold on")
    allowed = int(math.floor(target_fpr * s.size + 1e-9))
    threshold = float(s[min(allowed, s.size - 1)])
    return threshold, float(np.mean(s > threshold))


def component_stats(raw: np.ndarray) -> tuple[list[float], list[float]]:
    mean = raw.mean(0)
    std = np.maximum(raw.std(0, ddof=1) if raw.shape[0] > 1 else np.zeros(raw.shape[1]), COMPONENT_STD_FLOOR)
    return mean.tolist(), std.tolist()
