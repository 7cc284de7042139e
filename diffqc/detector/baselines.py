"""Two non-diffusion reference detectors, to show what the diffusion prior adds.

- median-filter residual: |x - median(x)| finds small spots and thin lines, knows nothing of the product;
- per-pixel Gaussian: z-score of each pixel against the good images at that position (strong on
  aligned parts, blind on textures).
``score_maps`` returns their maps (N, H, W) and scores (N,), the score = peak of the smoothed map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from diffqc.detector.filters import gaussian_blur

SMOOTH_SIGMA = 2.0


def _smooth(m: np.ndarray) -> np.ndarray:
    return gaussian_blur(torch.from_numpy(m.astype(np.float32))[None, None], SMOOTH_SIGMA)[0, 0].numpy()


class MedianResidual:
    name = "median-filter residual"

    def __init__(self, size: int = 9):
        self.size = size

    def fit(self, images: Sequence[np.ndarray]) -> MedianResidual:
        return self

    def map(self, image: np.ndarray) -> np.ndarray:
        med = ndimage.median_filter(image, size=(self.size, self.size, 1), mode="reflect")
        return _smooth(np.abs(image - med).mean(axis=2))


class PixelGaussian:
    name = "per-pixel Gaussian"

    def fit(self, images: Sequence[np.ndarray]) -> PixelGaussian:
        shapes = {im.shape for im in images}
        if len(shapes) == 1:
            stack = np.stack(images).astype(np.float64)
            self.mu = stack.mean(0)
            var = stack.var(0, ddof=1) if len(images) > 1 else np.zeros_like(self.mu)
        else:  # sizes differ: one Gaussian per channel is all that is defined
            flat = np.concatenate([im.reshape(-1, im.shape[2]) for im in images])
            self.mu, var = flat.mean(0), flat.var(0)
        self.sigma = np.sqrt(np.maximum(var, max(float(np.median(var)) * 0.25, 1e-6)))
        return self

    def map(self, image: np.ndarray) -> np.ndarray:
        if self.mu.ndim == 3 and self.mu.shape != image.shape:
            raise ValueError(f"per-pixel Gaussian fitted on {self.mu.shape}, got image {image.shape}")
        z = (image - self.mu) / self.sigma
        return _smooth(np.sqrt((z * z).mean(axis=2)))


class BaselineScores(NamedTuple):
    maps: list[np.ndarray]  # (H, W) per image
    scores: np.ndarray  # (N,) the peak of each map


def score_maps(baseline, images: Sequence[np.ndarray]) -> BaselineScores:
    maps = [baseline.map(im) for im in images]
    return BaselineScores(maps, np.array([float(m.max()) for m in maps]))
