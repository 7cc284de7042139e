"""From an image and its reconstruction to the anomaly map.

Raw evidence per pixel (order = ``MAP_COMPONENTS``):
  residual    |x - x^| averaged over channels
  structural  1 - SSIM(x, x^)
  gradient    |grad x - grad x^|  (edges that appear, vanish or move)
  statistics  deviation from the statistics of good images (per-pixel or local-patch Gaussian)
  perceptual  LPIPS-like distance of x and x^ in a pretrained feature space      } models with
  memory      distance of each patch of x to the nearest good patch (PatchCore)  } map.features
Each is lightly smoothed, then normalized to a z-score by the mean and spread it has on held-out
good images — per pixel position for aligned parts (an edge that always reconstructs poorly is
not a defect), globally otherwise. The fused map is the weighted mean of the positive z-scores,
smoothed again: it reads as "how many good-image standard deviations away".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from diffqc.core.components import MAP_COMPONENTS
from diffqc.detector.config import MapConfig
from diffqc.detector.features import perceptual_distance
from diffqc.detector.filters import gaussian_blur, sobel, ssim_map
from diffqc.detector.good_stats import GoodStatistics

Window = tuple[int, int, int, int]  # y0, x0, h, w in the full image


def raw_components(
    x: torch.Tensor, recon: torch.Tensor, good: GoodStatistics, cfg: MapConfig, window: Window | None = None
) -> torch.Tensor:
    """(N, K, h, w) raw evidence, in ``cfg.components`` order."""
    residual = (x - recon).abs().mean(dim=1, keepdim=True)
    structural = 1 - ssim_map(x, recon, cfg.ssim_sigma)
    c = x.shape[1]
    gx_both, gy_both = sobel(torch.cat([x, recon], dim=1))
    gx, rx = gx_both.split(c, dim=1)
    gy, ry = gy_both.split(c, dim=1)
    gradient = ((gx - rx) ** 2 + (gy - ry) ** 2).mean(dim=1, keepdim=True).sqrt()
    evidence = [residual, structural, gradient, good.raw_map(x, window)]
    if cfg.features:
        evidence += [perceptual_distance(x, recon), good.memory_map(x, window)]
    return gaussian_blur(torch.cat(evidence, dim=1), cfg.pre_sigma)


@dataclass
class Normalizer:
    """Mean and spread of each raw component on good images: (K, H, W) per pixel or (K, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor

    def to(self, device: torch.device) -> Normalizer:
        return Normalizer(self.mean.to(device), self.std.to(device))

    @property
    def per_pixel(self) -> bool:
        return self.mean.shape[-1] > 1 or self.mean.shape[-2] > 1

    @classmethod
    def fit(cls, raws: list[torch.Tensor], per_pixel: bool, std_smooth: float = 2.0) -> Normalizer:
        """``raws``: batches (n, K, H, W) of raw components of held-out good images."""
        if per_pixel and sum(r.shape[0] for r in raws) >= 2:
            stack = torch.cat(raws)
            mean = stack.mean(0)
            # Few images per pixel: pool the variance over a neighbourhood and floor it at a share
            # of the typical level, so one quiet position cannot turn noise into a huge z.
            var = gaussian_blur(stack.var(0, unbiased=True)[None], std_smooth)[0]
            floor = var.flatten(1).median(dim=1).values.view(-1, 1, 1) * 0.25
            std = var.maximum(floor).clamp_min(1e-12).sqrt()
            # The statistics evidence is already a per-pixel z-score: re-normalizing it per pixel
            # from a few images would only add their noise, so it gets one global scale.
            # The same for the memory distance: a deviation from good patches already.
            for i in (MAP_COMPONENTS.index("statistics"), MAP_COMPONENTS.index("memory")):
                if i < stack.shape[1]:
                    flat = stack[:, i].flatten()
                    mean[i], std[i] = flat.mean(), flat.std().clamp_min(1e-6)
            return cls(mean, std)
        flat = torch.cat([r.transpose(0, 1).reshape(r.shape[1], -1) for r in raws], dim=1)
        return cls(flat.mean(1).view(-1, 1, 1), flat.std(1).clamp_min(1e-6).view(-1, 1, 1))

    def window(self, window: Window | None) -> tuple[torch.Tensor, torch.Tensor]:
        if window is None or not self.per_pixel:
            return self.mean, self.std
        y0, x0, h, w = window
        return self.mean[:, y0 : y0 + h, x0 : x0 + w], self.std[:, y0 : y0 + h, x0 : x0 + w]

    def __call__(self, raw: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        mean, std = self.window(window)
        if self.per_pixel and mean.shape[-2:] != raw.shape[-2:]:
            raise ValueError(f"per-pixel statistics are {tuple(mean.shape[-2:])}, image is {tuple(raw.shape[-2:])}")
        return (raw - mean) / std


def fuse(
    z: torch.Tensor, cfg: MapConfig, weights: Mapping[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(anomaly map, structural map), each (N, 1, h, w), from normalized components (N, K, h, w);
    ``weights`` default to ``cfg.weights``."""
    weights = cfg.weights if weights is None else weights
    w = torch.tensor([float(weights.get(name, 0.0)) for name in cfg.components], dtype=z.dtype, device=z.device)
    if float(w.sum()) <= 0:
        raise ValueError("map.weights: at least one component needs a positive weight")
    pos = z.clamp_min(0)
    fused = (pos * w.view(1, -1, 1, 1)).sum(1, keepdim=True) / w.sum()
    structural = pos[:, MAP_COMPONENTS.index("structural") : MAP_COMPONENTS.index("structural") + 1]
    return gaussian_blur(fused, cfg.sigma), gaussian_blur(structural, cfg.sigma)


def candidate_weights(cfg: MapConfig) -> list[dict[str, float]]:
    """The fusions ``learn_weights`` chooses from: the configured one first (it wins ties), each
    component alone, the diffusion evidence, the good-image evidence, and each diffusion component
    with each good-image one."""
    names = cfg.components
    good_image: list[str] = [n for n in ("statistics", "memory") if n in names]
    diffusion = [n for n in names if n not in good_image]
    groups: list[list[str]] = [[n] for n in names]
    groups += [diffusion, good_image]
    groups += [[d, g] for d in diffusion for g in good_image]
    return [dict(cfg.weights)] + [{n: float(n in group) for n in names} for group in groups]


def learn_weights(
    good: Sequence[torch.Tensor], anomalous: Sequence[torch.Tensor], normalizer: Normalizer, cfg: MapConfig
) -> tuple[dict[str, float], float]:
    """(weights, AUROC): the fusion whose map peak separates the good raw evidence (batches (n, K, H, W))
    from the anomalous one (synthetic anomalies of the same images) clearly better than the configured
    fusion does, else the configured one.

    "Clearly": the best candidate's AUROC exceeds the configured fusion's in at least 95% of paired
    bootstrap resamples of the images. A few dozen synthetic anomalies rank close candidates by noise,
    and a candidate that only looks better on them was measured to lose on real defects (battery
    electrode: 0.72 instead of 0.78), so the configured fusion keeps the benefit of the doubt."""
    from sklearn.metrics import roc_auc_score

    good_z = [normalizer(r) for r in good]
    bad_z = [normalizer(r) for r in anomalous]
    labels = np.r_[np.zeros(sum(len(z) for z in good_z)), np.ones(sum(len(z) for z in bad_z))]
    candidates = [w for w in candidate_weights(cfg) if sum(w.get(n, 0.0) for n in cfg.components) > 0]
    peaks = [torch.cat([fuse(z, cfg, w)[0].flatten(1).amax(1) for z in [*good_z, *bad_z]]).numpy() for w in candidates]
    aurocs = [float(roc_auc_score(labels, p)) for p in peaks]
    best = int(np.argmax(aurocs))  # the first maximum: the configured fusion wins ties
    if best == 0 or _bootstrap_win_rate(labels, peaks[best], peaks[0]) < 0.95:
        best = 0
    return candidates[best], aurocs[best]


def _bootstrap_win_rate(labels: np.ndarray, challenger: np.ndarray, incumbent: np.ndarray, rounds: int = 400) -> float:
    """Share of paired bootstrap resamples (good and anomalous resampled separately) in which the
    challenger's scores separate the classes better than the incumbent's (AUROC; ties count half)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    wins = 0.0
    for _ in range(rounds):
        idx = np.r_[rng.choice(good, good.size), rng.choice(bad, bad.size)]
        diff = roc_auc_score(labels[idx], challenger[idx]) - roc_auc_score(labels[idx], incumbent[idx])
        wins += 1.0 if diff > 1e-12 else 0.5 if abs(diff) <= 1e-12 else 0.0
    return wins / rounds
