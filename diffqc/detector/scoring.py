"""Image-level component scores and their weighted fusion into one score.

Components, in this order (Triton's SCORES output is [N, 4] in this order):
  0 pixel          peak of the fused anomaly map (pixel, gradient and statistics evidence)
  1 structural     peak of the normalized 1-SSIM map
  2 concentration  log(1 + excess mass) of the largest connected region above the region level
  3 process        largest |z| of the process parameters against the good-image distribution
Each raw component is turned into a z-score with its mean and spread on held-out good images of
the product, so the weights (plant reference: 0.4 / 0.3 / 0.2 / 0.1) mix comparable numbers.
When no process parameters are given, component 3 is reported as 0 and its weight is dropped
(the remaining weights are renormalized).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from diffqc.detector.config import COMPONENTS


def largest_region_mass(amap: np.ndarray, level: float) -> float:
    """Sum of (map - level) over the largest 8-connected region where map > level."""
    above = amap > level
    if not above.any():
        return 0.0
    labels, n = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    idx = np.arange(1, n + 1)
    # sum(map - level) over a region = sum(map) - level * area: no frame-sized temporary.
    masses = ndimage.sum_labels(amap, labels, idx) - level * ndimage.sum_labels(above, labels, idx)
    return float(np.max(masses))


def raw_image_components(
    amap: torch.Tensor, structural: torch.Tensor, region_level: float, process_dev: np.ndarray | None
) -> np.ndarray:
    """(N, 4) raw components from maps (N, 1, H, W); ``process_dev``: (N,) or None."""
    n = amap.shape[0]
    out = np.zeros((n, len(COMPONENTS)), dtype=np.float64)
    out[:, 0] = amap.flatten(1).amax(1).numpy()
    out[:, 1] = structural.flatten(1).amax(1).numpy()
    for i in range(n):
        out[i, 2] = np.log1p(largest_region_mass(amap[i, 0].numpy(), region_level))
    if process_dev is not None:
        out[:, 3] = process_dev
    return out


@dataclass
class ProcessStats:
    """Mean and spread of each process parameter (temperature, line speed, ...) on good parts."""

    names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def deviation(self, values: list[dict[str, float]] | None, n: int) -> np.ndarray | None:
        """(N,) largest |z| over the known parameters, or None when no parameters were given."""
        if not values or not self.names:
            return None
        if len(values) != n:
            raise ValueError(f"process: got {len(values)} parameter sets for {n} images")
        dev = np.zeros(n)
        for i, params in enumerate(values):
            unknown = set(params) - set(self.names)
            if unknown:
                raise ValueError(f"process: unknown parameter(s) {sorted(unknown)}; the model knows {self.names}")
            zs = [abs(float(params[k]) - m) / s for k, m, s in zip(self.names, self.mean, self.std, strict=True)
                  if k in params]
            dev[i] = max(zs, default=0.0)
        return dev


def fuse_scores(
    raw: np.ndarray, mean: np.ndarray, std: np.ndarray, weights: dict[str, float], has_process: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(normalized components (N, 4), fused score (N,)). The process column is 0 when absent."""
    z = (raw - mean) / np.maximum(std, 1e-6)
    w = np.array([float(weights.get(name, 0.0)) for name in COMPONENTS])
    if not has_process:
        z[:, COMPONENTS.index("process")] = 0.0
        w[COMPONENTS.index("process")] = 0.0
    if w.sum() <= 0:
        raise ValueError("score.weights: at least one usable component needs a positive weight")
    return z, (z * w).sum(1) / w.sum()
