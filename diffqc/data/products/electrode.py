"""Coated battery electrode web (grayscale line camera): a dark granular coating with the bare
foil margin on the right (the coating edge is aligned); pinholes, streaks, cracks, delamination."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffqc.data import shapes as sh
from diffqc.data.products._base import Product, Scene, Size, blend, photometric


def design(rng: np.random.Generator, size: Size) -> dict:
    return {"edge": float(rng.uniform(0.83, 0.88)), "coat": float(rng.uniform(0.22, 0.27)), "foil": 0.78}


def render(design: dict, rng: np.random.Generator, size: Size) -> Scene:
    h, w = size
    s = min(size) / 256
    yy, xx = sh.grid(size)
    # Granular active material, plus faint streaks along the coating direction (down the web).
    coat = (
        design["coat"]
        + 0.045 * sh.noise(rng, size, 0.7 * s)
        + 0.02 * sh.noise(rng, size, 2.5 * s)
        + 0.012 * sh.noise(rng, size, (50 * s, 0.8 * s))
    )
    foil = design["foil"] + 0.025 * sh.noise(rng, size, (40 * s, 0.5)) + 0.01 * sh.noise(rng, size, 0.6)
    # The coating edge wanders by about a pixel along the web; the web itself shifts a little.
    wobble = 0.5 * s * sh.noise(rng, (h, 1), (20 * s, 0))
    edge = design["edge"] * w + rng.uniform(-1.5, 1.5) * s + wobble
    coated = np.clip(edge - xx + 0.5, 0, 1)
    bead = np.exp(-(((xx - edge + 3 * s) / (2 * s)) ** 2))  # the slightly thicker edge bead
    img = foil * (1 - coated) + (coat + 0.05 * bead) * coated
    info = {"coated": coated, "edge": float(np.min(edge))}
    return Scene(np.clip(img, 0, 1)[:, :, None].astype(np.float32), photometric(rng, size, 1), info)


def _on_coating(rng: np.random.Generator, scene: Scene, margin: float) -> tuple[float, float]:
    h, _ = scene.size
    x_max = max(scene.info["edge"] - margin, margin + 1)
    return float(rng.uniform(min(margin, h / 2), max(h - margin, h / 2))), float(rng.uniform(margin, x_max))


def pinhole(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    cy, cx = _on_coating(rng, scene, 10 * s)
    alpha = np.zeros(scene.size, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        r = max(0.9, rng.uniform(0.8, 0.8 + 2.2 * u) * s)
        alpha = np.maximum(alpha, sh.disk(scene.size, cy + rng.normal(0, 5 * s), cx + rng.normal(0, 5 * s), r))
    # The foil shines through the hole.
    return blend(scene.base, rng.uniform(0.55, 0.8), alpha), alpha > 0.1


def streak(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    h, _ = scene.size
    width = max(1.5, (1.5 + 4 * u) * s)
    _, cx = _on_coating(rng, scene, width + 4)
    length = rng.uniform(0.3, 1.0) * h
    y0 = rng.uniform(0, h - length)
    # A scraper line: a thinner (lighter) or heaped (darker) track down the web.
    alpha = ndimage.gaussian_filter(sh.rect(scene.size, y0, cx - width / 2, y0 + length, cx + width / 2), 0.7)
    contrast = (0.04 + 0.1 * u) * rng.choice([-1, 1], p=[0.3, 0.7])
    return scene.base + contrast * alpha[:, :, None], alpha > 0.25


def crack(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    h, _ = scene.size
    start = np.array(_on_coating(rng, scene, 12 * s))
    length = (0.1 + 0.35 * u) * h
    main = sh.wander(rng, start, rng.uniform(-np.pi, np.pi), length, bend=0.35, step=3 * s)
    alpha = sh.line(scene.size, main, max(1.0, 1.3 * s))
    for _ in range(int(rng.integers(0, 3))):  # side branches
        at = main[int(rng.integers(len(main)))]
        branch = sh.wander(rng, at, rng.uniform(-np.pi, np.pi), length * rng.uniform(0.2, 0.5), 0.35, 3 * s)
        alpha = np.maximum(alpha, sh.line(scene.size, branch, max(0.8, 1.0 * s)))
    alpha = alpha * scene.info["coated"]
    return scene.base - rng.uniform(0.1, 0.2) * alpha[:, :, None], alpha > 0.1


def delamination(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = (6 + 24 * u) * s
    cy, cx = _on_coating(rng, scene, r + 3)
    shape = sh.blob(rng, scene.size, cy, cx, r, 0.6, rng.uniform(1, 1.7), rng.uniform(0, np.pi))
    shape = shape * scene.info["coated"]
    # Peeled coating exposes the brighter foil; the torn rim casts a dark border.
    rim = np.clip(shape - ndimage.binary_erosion(shape > 0.5, iterations=max(1, int(1.5 * s))), 0, 1)
    level = rng.uniform(0.45, 0.7)
    texture = 0.03 * sh.noise(rng, scene.size, 1.0)[:, :, None]
    changed = blend(scene.base, level + texture, shape)
    changed = blend(changed, 0.08, 0.8 * rim)
    return changed, shape > 0.25


PRODUCT = Product(
    name="battery_electrode",
    description="coated electrode foil, grayscale; pinholes, streaks, cracks, delamination",
    channels=1,
    aligned=True,
    design=design,
    render=render,
    defects={"pinhole": pinhole, "streak": streak, "crack": crack, "delamination": delamination},
)
