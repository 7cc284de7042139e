"""Guided partial-diffusion reconstruction (DDAD-style conditioned DDIM).

The input is noised to t* (not to pure noise: coarse structure survives), then k deterministic
DDIM steps run back to t = 0. At every step the predicted noise is pulled toward the input
(Mousakhan et al., "Anomaly Detection with Conditioned Denoising Diffusion Models"):

    y_t   = sqrt(a_t) * y + sqrt(1 - a_t) * eps
    eps^  = eps - w * sqrt(1 - a_t) * (y_t - x_t)

so normal detail follows the input while the learned prior replaces what it has never seen.
The starting noise is a deterministic function of absolute pixel position: tiles that overlap see
the same noise, and per-pixel normalization statistics absorb the noise pattern's own residual.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

import numpy as np
import torch

from diffqc.detector.config import ReconConfig
from diffqc.detector.unet import Denoiser


@lru_cache(maxsize=16)
def _noise_cached(c: int, y0: int, x0: int, h: int, w: int, seed: int, cell: int) -> torch.Tensor:
    # On the CPU, with CPU generators, whatever device the detector computes on: the same noise everywhere.
    out = torch.empty(c, h, w, device="cpu")
    for cy in range(y0 // cell, (y0 + h - 1) // cell + 1):
        for cx in range(x0 // cell, (x0 + w - 1) // cell + 1):
            g = torch.Generator().manual_seed((seed * 1_000_003 + cy) * 1_000_033 + cx & (2**62 - 1))
            block = torch.randn(c, cell, cell, generator=g, device="cpu")
            ys, ye = max(cy * cell, y0), min((cy + 1) * cell, y0 + h)
            xs, xe = max(cx * cell, x0), min((cx + 1) * cell, x0 + w)
            out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = block[
                :, ys - cy * cell : ye - cy * cell, xs - cx * cell : xe - cx * cell
            ]
    return out


def noise_field(c: int, y0: int, x0: int, h: int, w: int, seed: int = 0, cell: int = 64) -> torch.Tensor:
    """(c, h, w) standard normal noise of the window at (y0, x0), on the CPU; identical wherever windows overlap."""
    return _noise_cached(c, y0, x0, h, w, seed, cell)


def timesteps(t_star: int, k: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs of k DDIM steps from t_star down to clean (t_next = -1 means alpha_bar = 1)."""
    if k < 1:
        raise ValueError(f"recon.steps must be >= 1, got {k}")
    pts = np.round(np.linspace(t_star, 0, k + 1)).astype(int).tolist()
    ts = pts[:-1]
    return list(zip(ts, ts[1:] + [-1], strict=True))


def window_noise(c: int, windows: list[tuple[int, int, int, int]], seed: int = 0, cell: int = 64) -> torch.Tensor:
    """(B, c, h, w) starting noise for a batch of windows (y0, x0, h, w) of the same shape, on the CPU."""
    return torch.stack([noise_field(c, y0, x0, h, w, seed, cell) for y0, x0, h, w in windows])


@torch.inference_mode()
def reconstruct(
    model: Denoiser,
    x01: torch.Tensor,
    acp: torch.Tensor,
    recon: ReconConfig,
    noise: torch.Tensor,
    *,
    steps: int | None = None,
    coords: torch.Tensor | None = None,
    class_labels: torch.Tensor | None = None,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """Reconstruct a batch ``x01`` (N, C, H, W in [0, 1]); returns the reconstruction in [0, 1].

    ``noise`` (N, C, H, W) is the starting noise (see :func:`window_noise`), on ``x01``'s device.
    ``autocast``: the dtype the denoiser runs under (``diffqc.detector.placement``); None = float32.
    The arithmetic between the steps stays float32.
    """
    k = recon.steps if steps is None else steps
    if not 0 < recon.t_star < len(acp):
        raise ValueError(f"recon.t_star must be in 1..{len(acp) - 1}, got {recon.t_star}")
    y = x01 * 2 - 1
    n = y.shape[0]
    a = float(acp[recon.t_star])
    x_t = a**0.5 * y + (1 - a) ** 0.5 * noise.to(y.dtype)
    x0 = y
    for t, t_next in timesteps(recon.t_star, k):
        a_t = float(acp[t])
        a_next = 1.0 if t_next < 0 else float(acp[t_next])
        with torch.autocast(y.device.type, dtype=autocast) if autocast is not None else nullcontext():
            eps = model(x_t, torch.full((n,), t, dtype=torch.long, device=y.device), coords, class_labels).float()
        if recon.guidance:
            y_t = a_t**0.5 * y + (1 - a_t) ** 0.5 * eps
            eps = eps - recon.guidance * (1 - a_t) ** 0.5 * (y_t - x_t)
        x0 = ((x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
        x_t = a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
    return (x0 + 1) / 2
