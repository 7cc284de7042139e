"""Non-diffusion reference detectors, to show what the diffusion prior adds.

- median-filter residual: |x - median(x)| finds small spots and thin lines, knows nothing of the product;
- per-pixel Gaussian: z-score of each pixel against the good images at that position (strong on
  aligned parts, blind on textures);
- PatchCore: nearest good patch in a pretrained feature space, the peer a user would pick instead.
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
PATCHCORE_SIGMA = 4.0  # the paper smooths its upsampled patch map with a Gaussian of sigma 4


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


class PatchCore:
    """PatchCore (Roth et al., 2022) on the same pretrained backbone as the detector: locally aware
    patch features at strides 8 and 16, a 10% greedy coreset of the good patches (of at most 50,000
    drawn at random, for the CPU budget), the distance to the nearest one (k = 1) per patch,
    upsampled and smoothed; the score is the map's peak."""

    name = "PatchCore"

    def __init__(self, coreset: float = 0.1, max_patches: int = 50_000, seed: int = 0, batch: int = 8):
        self.coreset, self.max_patches, self.seed, self.batch = coreset, max_patches, seed, batch

    def fit(self, images: Sequence[np.ndarray]) -> PatchCore:
        from diffqc.detector.features import MemoryBank, as_batch, locally_aware_patches

        with torch.inference_mode():
            feats = [
                locally_aware_patches(torch.cat([as_batch(im) for im in images[i : i + self.batch]]))
                for i in range(0, len(images), self.batch)
            ]
            self.memory = MemoryBank.fit(feats, self.coreset, self.max_patches, self.seed)
        return self

    def map(self, image: np.ndarray) -> np.ndarray:
        from diffqc.detector.features import as_batch, locally_aware_patches, upsample

        with torch.inference_mode():
            x = as_batch(image)
            nearest = self.memory.distance(locally_aware_patches(x))
            full = upsample(nearest, (image.shape[0], image.shape[1]))
            return gaussian_blur(full, PATCHCORE_SIGMA)[0, 0].numpy()
