"""What ``Detector.predict`` returns: named arrays instead of a positional tuple (in the style of
anomalib's ``InferenceBatch`` and diffusers' scheduler outputs). numpy only, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from diffqc.core.components import COMPONENTS


@dataclass(frozen=True)
class Prediction:
    """The detector's answer for a batch of N images (N, C, H, W); every array is float32.

    ``anomaly_map``: (N, 1, H, W) fused anomaly map in good-image standard deviations.
    ``components``: (N, K) score components as z-scores, in ``COMPONENTS`` order (process is 0:
    the platform measures it, ``diffqc.core.components``).
    ``score``: (N,) fused score; the verdict is ``score > detector.threshold(product)``.
    ``reconstruction``: (N, C, H, W) in [0, 1], the good-looking image the residual is measured
    against; only with ``predict(..., return_reconstruction=True)``, else None.
    """

    anomaly_map: np.ndarray
    components: np.ndarray
    score: np.ndarray
    reconstruction: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.score)

    def component_dict(self, i: int) -> dict[str, float]:
        """Image ``i``'s components by name, in ``COMPONENTS`` order."""
        return dict(zip(COMPONENTS, map(float, self.components[i]), strict=True))


class ImageScores(NamedTuple):
    """Image-level scores of a batch, from its maps (``Detector.score_maps``)."""

    components: np.ndarray  # (N, K) float32 z-scores in COMPONENTS order
    score: np.ndarray  # (N,) float32
