"""Evidence in the pretrained feature space (``diffqc.detector.backbone``).

- ``locally_aware_patches``: PatchCore's locally aware patch features: the stride-8 and stride-16 stage
  outputs, each averaged over its 3x3 neighbourhood, the coarser one upsampled, concatenated
  (40 + 112 = 152 values per 8x8-pixel patch).
- ``MemoryBank``: the patch features of good images, thinned to a greedy k-center coreset; the
  evidence of a patch is its distance to the nearest good patch (k = 1), as in PatchCore. For
  textures and parts that move.
- ``PositionGaussian``: PaDiM's per-position Gaussian of the patch features, for aligned parts.
- ``perceptual_distance``: LPIPS-style difference of two images' features (channels scaled to unit
  length, squared difference summed over channels, averaged over the stages): how different an
  image and its reconstruction look to a network that has seen the world, not pixel by pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffqc.detector.backbone import feature_extractor

PATCH_STRIDE = 8


def locally_aware_patches(x: torch.Tensor) -> torch.Tensor:
    """(N, 152, H/8, W/8) locally aware patch features of images (N, C, H, W) in [0, 1]."""
    _, mid, deep = feature_extractor(x.device)(x)
    mid = F.avg_pool2d(mid, 3, stride=1, padding=1, count_include_pad=False)
    deep = F.avg_pool2d(deep, 3, stride=1, padding=1, count_include_pad=False)
    deep = F.interpolate(deep, size=mid.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([mid, deep], dim=1)


def perceptual_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): the LPIPS-style distance of images ``x`` and ``y`` (N, C, H, W), per pixel."""
    size = (x.shape[-2], x.shape[-1])
    stages = feature_extractor(x.device)(torch.cat([x, y]))
    out = torch.zeros(x.shape[0], 1, *size, device=x.device)
    for f in stages:
        unit = f / (f.norm(dim=1, keepdim=True) + 1e-8)
        a, b = unit.chunk(2)
        out += upsample(((a - b) ** 2).sum(1, keepdim=True), size)
    return out / len(stages)


def greedy_coreset(points: torch.Tensor, fraction: float, seed: int = 0, projection: int = 128) -> torch.Tensor:
    """Indices of a greedy k-center coreset of ``points`` (M, D): each pick is the point farthest from
    those picked so far, measured after a random projection to ``projection`` dimensions (the
    Johnson-Lindenstrauss shortcut PatchCore uses)."""
    m = points.shape[0]
    k = max(1, round(fraction * m))
    if k >= m:
        return torch.arange(m)
    generator = torch.Generator().manual_seed(seed)
    if points.shape[1] > projection:
        matrix = torch.randn(points.shape[1], projection, generator=generator) / projection**0.5
        points = points @ matrix
    # ||p - q||^2 = ||p||^2 - 2 p.q + ||q||^2: one matrix-vector product per pick.
    norms = (points * points).sum(1)
    chosen = [int(torch.randint(m, (1,), generator=generator))]
    nearest = norms - 2 * points @ points[chosen[-1]] + norms[chosen[-1]]
    for _ in range(k - 1):
        chosen.append(int(nearest.argmax()))
        torch.minimum(nearest, norms - 2 * points @ points[chosen[-1]] + norms[chosen[-1]], out=nearest)
    return torch.tensor(chosen)


class MemoryBank:
    """Good patches (a coreset of them) and the distance of new patches to the nearest one."""

    def __init__(self, bank: torch.Tensor):
        self.bank = bank  # (K, D)

    @classmethod
    def fit(
        cls, features: list[torch.Tensor], fraction: float = 0.1, max_patches: int = 50_000, seed: int = 0
    ) -> MemoryBank:
        """``features``: patch features (n, D, h, w) of good images, in batches. The coreset keeps
        ``fraction`` of at most ``max_patches`` patches drawn at random: the greedy search costs
        picks x patches, and over all 200 x 1024 patches of a 256 px data set it takes ~15 min on
        2 CPU cores (memory-bound), against ~20 s for 50,000."""
        points = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in features])
        if points.shape[0] > max_patches:
            generator = torch.Generator().manual_seed(seed)
            points = points[torch.randperm(points.shape[0], generator=generator)[:max_patches]]
        return cls(points[greedy_coreset(points, fraction, seed)].contiguous())

    def distance(self, features: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """(N, 1, h, w) distance of each patch of ``features`` (N, D, h, w) to its nearest good patch."""
        n, d, h, w = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(-1, d)
        nearest = torch.cat([torch.cdist(part, self.bank).amin(1) for part in flat.split(chunk)])
        return nearest.view(n, 1, h, w)


class PositionGaussian:
    """PaDiM for aligned parts: where every good part shows the same feature at the same place, a
    patch's evidence is its Mahalanobis distance to the mean good patch *at its position*. One
    covariance of the deviations is shared by all positions and shrunk (Ledoit-Wolf): 150 good
    images cannot estimate a 152 x 152 covariance per position, and the shared one is 90 KB
    instead of PaDiM's ~100 MB at 256 px."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor):
        self.mean = mean  # (D, h, w)
        self.precision = precision  # (D, D)

    @classmethod
    def fit(cls, features: list[torch.Tensor]) -> PositionGaussian:
        """``features``: patch features (n, D, h, w) of good images, all of one size, in batches."""
        from sklearn.covariance import LedoitWolf

        stacked = torch.cat(features)
        mean = stacked.mean(0)
        deviations = (stacked - mean).permute(0, 2, 3, 1).reshape(-1, stacked.shape[1])
        covariance = LedoitWolf(assume_centered=True).fit(deviations.double().numpy()).covariance_
        return cls(mean.contiguous(), torch.linalg.inv(torch.from_numpy(covariance)).float())

    def distance(self, features: torch.Tensor, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """(N, 1, h, w) Mahalanobis distance of each patch of ``features`` (N, D, h, w) to the good
        mean at its position; ``window`` = (y0, x0, h, w) in pixels of the full image (a tile)."""
        mean = self.mean
        if window is not None:
            y0, x0 = window[0] // PATCH_STRIDE, window[1] // PATCH_STRIDE
            mean = mean[:, y0 : y0 + features.shape[-2], x0 : x0 + features.shape[-1]]
        if mean.shape[-2:] != features.shape[-2:]:
            raise ValueError(
                f"the model learned {tuple(self.mean.shape[-2:])} patch positions of an aligned part; this image "
                f"gives {tuple(features.shape[-2:])}: aligned parts must come at the size they were trained at"
            )
        deviation = features - mean
        squared = torch.einsum("ndhw,de,nehw->nhw", deviation, self.precision, deviation)
        return squared.clamp_min(0).sqrt().unsqueeze(1)


def upsample(patch_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A per-patch map (N, 1, h, w) at image resolution (bilinear)."""
    return F.interpolate(patch_map, size=size, mode="bilinear", align_corners=False)


def as_batch(image: np.ndarray) -> torch.Tensor:
    """(1, C, H, W) float32 of an H x W x C image in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
