"""Per-product calibration on held-out good images: map normalization, score scale, threshold.

The held-out good images are split in two: part A measures the per-pixel (or global) statistics
that normalize the evidence maps; part B, which those statistics have not seen, measures the
image-level score distribution and sets the threshold. Measuring both on the same images would
make good images look better than new ones and the threshold too low.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from diffqc.core.components import COMPONENTS

# Smallest spread allowed for an image-level component (in its own units): a component that is
# almost always 0 on good images (concentration) must not turn the first tiny blob into z = 100.
COMPONENT_STD_FLOOR = 0.25


@dataclass
class Calibration:
    region_level: float = 0.0
    comp_mean: list[float] = field(default_factory=lambda: [0.0] * len(COMPONENTS))
    comp_std: list[float] = field(default_factory=lambda: [1.0] * len(COMPONENTS))
    threshold: float = 0.0
    method: str = "fpr"  # fpr: FPR target on held-out good images; f1_max: labelled defects
    target_fpr: float = 0.03
    calibration_fpr: float | None = None
    # The threshold rule (diffqc.detector.threshold) and the FPR it promises on new good parts.
    threshold_rule: str | None = None
    expected_fpr: float | None = None
    n_normalization: int = 0
    n_calibration: int = 0
    # Map fusion weights chosen for this product (map.fusion = learned); None: the config's.
    map_weights: dict[str, float] | None = None
    # The separation (AUROC) of good images and synthetic anomalies the chosen weights reached.
    synthetic_auroc: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        d = dict(d)
        # Artifacts before 0.2 kept statistics of process parameters here: process is the platform's now.
        d.pop("process", None)
        return cls(**d)


class Split(NamedTuple):
    """Indices of a product's good images: trained on, and held out (for calibration)."""

    train: np.ndarray
    held_out: np.ndarray


class CalibrationSplit(NamedTuple):
    """Held-out indices in two parts: A measures map normalization, B the score scale and threshold."""

    normalization: np.ndarray
    calibration: np.ndarray


class ComponentStats(NamedTuple):
    """Mean and (floored) standard deviation of each image component on good images."""

    mean: list[float]
    std: list[float]


def split_holdout(n: int, fraction: float, minimum: int, rng: np.random.Generator) -> Split:
    """(train indices, held-out indices); at least ``minimum`` held out and one image to train on."""
    n_hold = max(minimum, round(fraction * n))
    if n - n_hold < 1:
        raise ValueError(f"need at least {minimum + 1} good images (train + held out), got {n}")
    perm = rng.permutation(n)
    return Split(np.sort(perm[n_hold:]), np.sort(perm[:n_hold]))


def split_calibration(held_out: np.ndarray) -> CalibrationSplit:
    """Held-out indices -> (A: map normalization, B: score calibration)."""
    half = math.ceil(len(held_out) / 2)
    return CalibrationSplit(held_out[:half], held_out[half:])


def component_stats(raw: np.ndarray) -> ComponentStats:
    mean = raw.mean(0)
    std = np.maximum(raw.std(0, ddof=1) if raw.shape[0] > 1 else np.zeros(raw.shape[1]), COMPONENT_STD_FLOOR)
    return ComponentStats(mean.tolist(), std.tolist())
