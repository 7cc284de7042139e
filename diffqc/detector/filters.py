"""Small image filters in torch (batched NCHW): Gaussian blur, SSIM map, Sobel gradients."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel; reflect padding so borders are not darkened."""
    if sigma <= 0:
        return x
    k = _kernel(float(sigma)).to(x.dtype)
    r = (k.numel() - 1) // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    mode = "reflect" if r < h and r < w else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (Gaussian window) averaged over channels: (N, 1, H, W), data range 1."""
    c1, c2 = 0.01**2, 0.03**2
    mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
    sxx = gaussian_blur(x * x, sigma) - mx * mx
    syy = gaussian_blur(y * y, sigma) - my * my
    sxy = gaussian_blur(x * y, sigma) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=1, keepdim=True)


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel derivatives of every channel (replicate padding)."""
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    kx = _SOBEL.to(x.dtype).view(1, 1, 3, 3)
    gx = F.conv2d(y, kx).reshape(n, c, h, w)
    gy = F.conv2d(y, kx.transpose(2, 3)).reshape(n, c, h, w)
    return gx, gy
