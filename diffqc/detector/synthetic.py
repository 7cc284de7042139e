"""Synthetic anomalies made from good images, to choose the fusion without any real defect.

Three generic kinds, none of them the benchmark's or the demo's defect generators: CutPaste (a
patch of the same image moved elsewhere, DRAEM/CutPaste-style), a smooth intensity blob and a
thin scratch. Each changes a small, connected region, as surface defects do.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def cut_paste(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    ph, pw = int(rng.integers(h // 10, h // 4 + 1)), int(rng.integers(w // 10, w // 4 + 1))
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = image.copy()
    out[ty : ty + ph, tx : tx + pw] = np.rot90(image[sy : sy + ph, sx : sx + pw], 2)
    return out


def blob(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.04, 0.12) * h, rng.uniform(0.04, 0.12) * w
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    alpha = np.clip(1.2 - inside, 0, 1)[:, :, None]
    shift = rng.choice([-1, 1]) * rng.uniform(0.15, 0.35)
    return np.clip(image + shift * alpha, 0, 1).astype(image.dtype)


def scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    length = rng.uniform(0.2, 0.5) * max(h, w)
    y0, x0 = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    angle = rng.uniform(0, np.pi)
    t = np.linspace(0, 1, int(length * 2))
    ys = np.clip(y0 + t * length * np.sin(angle), 0, h - 1).astype(int)
    xs = np.clip(x0 + t * length * np.cos(angle), 0, w - 1).astype(int)
    mask = np.zeros((h, w), dtype=np.float32)
    mask[ys, xs] = 1.0
    mask = np.clip(ndimage.gaussian_filter(mask, 0.8) * 3, 0, 1)[:, :, None]
    value = rng.choice([0.05, 0.95])
    return (image * (1 - mask) + value * mask).astype(image.dtype)


KINDS = (cut_paste, blob, scratch)


def synthetic_anomalies(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """One anomaly per good image (H x W x C in [0, 1]), the kinds in turn."""
    rng = np.random.default_rng(seed)
    return [KINDS[i % len(KINDS)](im, rng) for i, im in enumerate(images)]
