"""Anti-aliased shapes and noise fields on a pixel grid (pixel i covers [i, i+1), centre i + 0.5).

Shared by the procedural products and the defects injected into real textures.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Size = tuple[int, int]


def grid(size: Size) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy + 0.5, xx + 0.5


def noise(rng: np.random.Generator, size: Size, sigma, mode: str = "wrap") -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation; ``sigma`` may be (sy, sx)."""
    field = ndimage.gaussian_filter(rng.standard_normal(size).astype(np.float32), sigma, mode=mode)
    return field / (field.std() + 1e-8)


def rect(size: Size, y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    """Exact pixel coverage of an axis-aligned rectangle: sub-pixel positions stay crisp."""
    h, w = size
    iy, ix = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    cy = np.clip(np.minimum(iy + 1, y1) - np.maximum(iy, y0), 0, 1)
    cx = np.clip(np.minimum(ix + 1, x1) - np.maximum(ix, x0), 0, 1)
    return np.outer(cy, cx)


def disk(size: Size, cy: float, cx: float, r: float) -> np.ndarray:
    """Anti-aliased filled circle, computed in its bounding box only."""
    h, w = size
    out = np.zeros(size, np.float32)
    y0, x0 = max(int(cy - r) - 2, 0), max(int(cx - r) - 2, 0)
    y1, x1 = min(int(cy + r) + 3, h), min(int(cx + r) + 3, w)
    if y0 < y1 and x0 < x1:
        yy, xx = grid((y1 - y0, x1 - x0))
        out[y0:y1, x0:x1] = np.clip(r - np.hypot(yy + y0 - cy, xx + x0 - cx) + 0.5, 0, 1)
    return out


def blob(
    rng: np.random.Generator,
    size: Size,
    cy: float,
    cx: float,
    radius: float,
    irregularity: float = 0.35,
    stretch: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """An irregular filled blob (radius modulated by a few random harmonics), anti-aliased."""
    yy, xx = grid(size)
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = (dx * ca + dy * sa) / stretch, -dx * sa + dy * ca
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    rad = np.ones_like(r)
    for k in range(2, 6):
        rad += irregularity / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip(radius * np.maximum(rad, 0.3) - r + 0.5, 0, 1)


def wander(
    rng: np.random.Generator, start: np.ndarray, angle: float, length: float, bend: float = 0.15, step: float = 4.0
) -> np.ndarray:
    """Points (y, x) of a gently curving path from ``start`` (an array (y, x)): a scratch or a crack."""
    n = max(2, int(length / step) + 1)
    turns = np.cumsum(rng.normal(0, bend, n - 1))
    angles = angle + turns
    steps = np.stack([np.sin(angles), np.cos(angles)], axis=1) * (length / (n - 1))
    return np.vstack([start, start + np.cumsum(steps, axis=0)]).astype(np.float32)


def polyline_distance(size: Size, points: np.ndarray) -> np.ndarray:
    """Distance from every pixel centre to a polyline, computed only in its bounding box."""
    h, w = size
    dist = np.full(size, np.inf, dtype=np.float32)
    pad = 16
    y0, x0 = np.floor(points.min(axis=0)).astype(int) - pad
    y1, x1 = np.ceil(points.max(axis=0)).astype(int) + pad
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if y0 >= y1 or x0 >= x1:
        return dist
    yy, xx = grid((y1 - y0, x1 - x0))
    yy, xx = yy + y0, xx + x0
    best = np.full(yy.shape, np.inf, dtype=np.float32)
    for (ay, ax), (by, bx) in zip(points[:-1], points[1:], strict=True):
        vy, vx = by - ay, bx - ax
        t = np.clip(((yy - ay) * vy + (xx - ax) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(yy - ay - t * vy, xx - ax - t * vx))
    dist[y0:y1, x0:x1] = best
    return dist


def line(size: Size, points: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased stroke of ``width`` pixels along a polyline."""
    return np.clip(width / 2 - polyline_distance(size, points) + 0.5, 0, 1)


def shading(height: np.ndarray, light=(-0.6, -0.8)) -> np.ndarray:
    """Lambert-like relief shading of a height field lit from ``light`` (dy, dx): dents and bumps."""
    gy, gx = np.gradient(height)
    return -(gy * light[0] + gx * light[1])


def inside(rng: np.random.Generator, size: Size, margin: float) -> tuple[float, float]:
    """A random point at least ``margin`` pixels from the border (or the centre if too small)."""
    h, w = size
    my, mx = min(margin, h / 2), min(margin, w / 2)
    return float(rng.uniform(my, h - my)), float(rng.uniform(mx, w - mx))
