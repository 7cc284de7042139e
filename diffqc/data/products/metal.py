"""Brushed stainless steel sheet (grayscale line camera): a stochastic texture, not aligned."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffqc.data import shapes as sh
from diffqc.data.products._base import Product, Scene, Size, photometric


def design(rng: np.random.Generator, size: Size) -> dict:
    return {"level": float(rng.uniform(0.5, 0.58))}


def render(design: dict, rng: np.random.Generator, size: Size) -> Scene:
    h, w = size
    s = min(size) / 256
    yy, _ = sh.grid(size)
    # Brushing: noise stretched along x gives the fine parallel grain; each sheet has its own.
    grain = (
        0.055 * sh.noise(rng, size, (0.6 * s, 30 * s))
        + 0.03 * sh.noise(rng, size, (0.35, 90 * s))
        + 0.012 * sh.noise(rng, size, 0.6)
    )
    # A broad reflection band across the brushing, as a bar light on a slightly bowed sheet gives.
    band = 0.07 * np.cos(2 * np.pi * (yy / h * rng.uniform(0.3, 0.8) + rng.uniform(0, 1)))
    base = (design["level"] + grain + band)[:, :, None].astype(np.float32)
    return Scene(np.clip(base, 0, 1), photometric(rng, size, 1, noise=(0.005, 0.012)))


def scratch(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    h, w = scene.size
    length = (0.15 + 0.5 * u) * w
    # Scratches run across the grain at any angle but the brushing direction itself.
    angle = rng.uniform(0.35, np.pi - 0.35) * rng.choice([-1, 1])
    start = sh.inside(rng, scene.size, 0.1 * min(h, w))
    pts = sh.wander(rng, np.array(start), angle, length, bend=0.04)
    alpha = sh.line(scene.size, pts, max(1.0, (0.8 + 2.2 * u) * s))
    contrast = (0.1 + 0.25 * u) * rng.choice([-1, 1])
    mask = alpha > 0.25
    return scene.base + contrast * alpha[:, :, None], mask


def dent(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = max(3.0, (5 + 14 * u) * s)
    cy, cx = sh.inside(rng, scene.size, r + 2)
    yy, xx = sh.grid(scene.size)
    d = np.hypot(yy - cy, xx - cx)
    height = -(1.5 + 3 * u) * r * np.exp(-(d**2) / (2 * (r / 2) ** 2))
    taper = np.clip((r - d) / (0.3 * r), 0, 1)  # relief fades to zero at the mask edge
    shade = 0.05 * sh.shading(height) * taper
    # Inside a dent the grain is pressed flat: blend towards a smoothed copy.
    smooth = ndimage.gaussian_filter(scene.base, (1.5 * s, 1.5 * s, 0))
    changed = scene.base * (1 - 0.6 * taper[:, :, None]) + smooth * 0.6 * taper[:, :, None] + shade[:, :, None]
    return changed, d < r


def stain(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = (6 + 28 * u) * s
    cy, cx = sh.inside(rng, scene.size, r)
    shape = sh.blob(rng, scene.size, cy, cx, r, 0.6, rng.uniform(1, 2), rng.uniform(0, np.pi))
    soft = ndimage.gaussian_filter(shape, 2 * s)
    alpha = np.clip((soft - 0.15) / 0.85, 0, 1)[:, :, None]
    smooth = ndimage.gaussian_filter(scene.base, (2 * s, 2 * s, 0))
    dark = rng.uniform(0.05, 0.1 + 0.15 * u)
    return scene.base * (1 - alpha) + (smooth - dark) * alpha, soft > 0.15


def pitting(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    spread = (6 + 18 * u) * s
    cy, cx = sh.inside(rng, scene.size, spread + 4)
    alpha = np.zeros(scene.size, np.float32)
    for _ in range(3 + int(9 * u)):
        py, px = cy + rng.normal(0, spread / 2), cx + rng.normal(0, spread / 2)
        alpha = np.maximum(alpha, sh.disk(scene.size, py, px, max(0.8, rng.uniform(0.8, 2.2) * s)))
    return scene.base - rng.uniform(0.15, 0.35) * alpha[:, :, None], alpha > 0.1


PRODUCT = Product(
    name="brushed_metal",
    description="brushed stainless sheet, grayscale; scratches, dents, stains, pitting",
    channels=1,
    aligned=False,
    design=design,
    render=render,
    defects={"scratch": scratch, "dent": dent, "stain": stain, "pitting": pitting},
)
