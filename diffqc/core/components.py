"""The score components: one definition of each, in the order of Triton's SCORES output [N, K].

Each component is a number per image; the detector turns each into a z-score against held-out
good images of the product, so the weights mix comparable numbers. The image components are
measured by the detector from its maps; ``process`` is measured by the platform from the frame's
process parameters and the product's nominal ranges (``diffqc.core.process``), because only the
platform knows them: the detector reports it as 0 and leaves its weight out of its own fusion.

Adding a component is one entry in ``SCORE_COMPONENTS`` (docs/architecture.md shows the rest a
change touches: none in the services).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from diffqc.core.regions import largest_region_mass


@dataclass(frozen=True)
class ImageEvidence:
    """The detector's maps of one image, from which the image components are measured."""

    anomaly_map: NDArray[np.floating[Any]]  # (H, W) fused, normalized anomaly map
    structural: NDArray[np.floating[Any]]  # (H, W) normalized 1-SSIM map
    region_level: float  # the map level that outlines a defect region


@dataclass(frozen=True)
class ScoreComponent:
    name: str
    default_weight: float  # the plant's reference weight
    meaning: str
    # None: measured by the platform from the frame's context, not by the detector.
    measure: Callable[[ImageEvidence], float] | None = None


def _concentration(evidence: ImageEvidence) -> float:
    return math.log1p(largest_region_mass(evidence.anomaly_map, evidence.region_level))


SCORE_COMPONENTS: tuple[ScoreComponent, ...] = (
    ScoreComponent(
        "pixel",
        0.4,
        "peak of the fused anomaly map (pixel, gradient and statistics evidence)",
        lambda e: float(e.anomaly_map.max()),
    ),
    ScoreComponent("structural", 0.3, "peak of the normalized 1-SSIM map", lambda e: float(e.structural.max())),
    ScoreComponent(
        "concentration",
        0.2,
        "log(1 + excess mass) of the largest connected region above the region level",
        _concentration,
    ),
    ScoreComponent(
        "process",
        0.1,
        "largest deviation of a process parameter from its nominal range, in range widths (diffqc.core.process)",
    ),
)
COMPONENTS: tuple[str, ...] = tuple(c.name for c in SCORE_COMPONENTS)
IMAGE_COMPONENTS: tuple[str, ...] = tuple(c.name for c in SCORE_COMPONENTS if c.measure is not None)
DEFAULT_SCORE_WEIGHTS: dict[str, float] = {c.name: c.default_weight for c in SCORE_COMPONENTS}

# Per-pixel evidence maps fused into the anomaly map, in the order the detector stacks them. The
# last two live in a pretrained feature space and are computed only by models trained with
# ``map.features`` (diffqc.detector.features): LPIPS-like input vs reconstruction, and the distance
# to the nearest good patch (PatchCore's memory).
MAP_COMPONENTS: tuple[str, ...] = ("residual", "structural", "gradient", "statistics", "perceptual", "memory")
FEATURE_MAP_COMPONENTS: tuple[str, ...] = ("perceptual", "memory")
DEFAULT_MAP_WEIGHTS: dict[str, float] = dict.fromkeys(MAP_COMPONENTS, 1.0)


def measure_components(evidence: Sequence[ImageEvidence]) -> NDArray[np.float64]:
    """(N, K) raw components in ``COMPONENTS`` order; the platform's columns are 0."""
    out = np.zeros((len(evidence), len(COMPONENTS)), dtype=np.float64)
    for j, component in enumerate(SCORE_COMPONENTS):
        if component.measure is not None:
            out[:, j] = [component.measure(e) for e in evidence]
    return out


def fuse_components(
    raw: NDArray[np.float64], mean: NDArray[np.float64], std: NDArray[np.float64], weights: Mapping[str, float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(z-scores (N, K), fused score (N,)): the weighted mean of the image components' z-scores.

    The platform's components are 0 here and carry no weight; scoring adds them on the scale the
    threshold was calibrated on (``diffqc.core.process.with_process``).
    """
    image = np.array([name in IMAGE_COMPONENTS for name in COMPONENTS])
    z = (raw - mean) / np.maximum(std, 1e-6)
    z[:, ~image] = 0.0
    w = np.array([float(weights.get(name, 0.0)) for name in COMPONENTS]) * image
    if w.sum() <= 0:
        raise ValueError("score.weights: at least one image component needs a positive weight")
    return z, (z * w).sum(1) / w.sum()
