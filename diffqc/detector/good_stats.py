"""Statistics of good images that are evidence by themselves, fused into the anomaly map.

On aligned parts a per-pixel Gaussian of good images is a strong detector; on textures, the
distribution of local patch statistics (local mean, contrast and gradient energy at two scales)
is. The diffusion residual has to add to these, so the detector measures them too and lets the
fusion use both (the benchmark shows each alone).
"""

from __future__ import annotations

import numpy as np
import torch

from diffqc.detector.filters import gaussian_blur, sobel

PIXEL, PATCH = "pixel", "patch"
FEW_IMAGES = 20


def patch_features(x: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) local statistics per channel: mean, std at sigma 2 and 6, gradient energy."""
    feats = []
    gx, gy = sobel(x)
    grad = (gx * gx + gy * gy).sqrt()
    for s in (2.0, 6.0):
        m = gaussian_blur(x, s)
        v = (gaussian_blur(x * x, s) - m * m).clamp_min(0)
        feats += [m, (v + 1e-6).sqrt()]
    feats.append(gaussian_blur(grad, 2.0))
    return torch.cat(feats, dim=1)


class GoodStatistics:
    """Either a per-pixel Gaussian (aligned) or a Gaussian of local patch features (textures)."""

    def __init__(self, kind: str, tensors: dict[str, torch.Tensor]):
        if kind not in (PIXEL, PATCH):
            raise ValueError(f"unknown statistics kind {kind!r}")
        self.kind = kind
        self.tensors = tensors

    @classmethod
    def fit(cls, images: list[np.ndarray], kind: str, std_smooth: float = 2.0, seed: int = 0) -> GoodStatistics:
        if kind == PIXEL:
            stack = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32))
            mu = stack.mean(0, keepdim=True)
            var = stack.var(0, keepdim=True, unbiased=True) if len(images) > 1 else torch.zeros_like(mu)
            # Few images: smooth the variance spatially, or flat regions explode. With enough images
            # the raw per-pixel variance is better (smoothing lowers it on thin high-variance edges).
            if len(images) < FEW_IMAGES:
                var = gaussian_blur(var, std_smooth)
            floor = max(float(var.median()) * 0.25, 1e-5)
            return cls(PIXEL, {"mu": mu[0], "sigma": var.clamp_min(floor).sqrt()[0]})
        rng = np.random.default_rng(seed)
        samples = []
        per_image = max(2000, 200_000 // max(1, len(images)))
        for im in images:
            f = patch_features(torch.from_numpy(im.transpose(2, 0, 1)[None].copy()))[0]
            f = f[:, 6:-6, 6:-6].reshape(f.shape[0], -1)  # borders are padding artefacts
            idx = rng.choice(f.shape[1], size=min(per_image, f.shape[1]), replace=False)
            samples.append(f[:, idx].T)
        data = torch.cat(samples).double()
        mean = data.mean(0)
        cov = torch.cov(data.T)
        cov = cov + torch.eye(cov.shape[0], dtype=cov.dtype) * (1e-3 * cov.diagonal().mean() + 1e-8)
        prec = torch.linalg.inv(cov)
        return cls(PATCH, {"mean": mean.float(), "prec": prec.float()})

    def raw_map(self, x: torch.Tensor, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """(N, 1, h, w) deviation of ``x`` from good images; ``window`` = (y0, x0, h, w) in the full image."""
        if self.kind == PIXEL:
            mu, sigma = self.tensors["mu"], self.tensors["sigma"]
            if window is not None:
                y0, x0, h, w = window
                mu, sigma = mu[:, y0 : y0 + h, x0 : x0 + w], sigma[:, y0 : y0 + h, x0 : x0 + w]
            z = (x - mu) / sigma
            return (z * z).mean(dim=1, keepdim=True).sqrt()
        f = patch_features(x)
        d = f - self.tensors["mean"].view(1, -1, 1, 1)
        md = torch.einsum("nfhw,fg,nghw->nhw", d, self.tensors["prec"], d)
        return md.clamp_min(0).sqrt().unsqueeze(1)
