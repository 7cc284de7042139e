"""Plain-weave fabric on a web (RGB): periodic, but each frame sees another phase of the weave."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffqc.data import shapes as sh
from diffqc.data.products._base import Product, Scene, Size, blend, photometric

BACKING = (0.04, 0.04, 0.05)


def design(rng: np.random.Generator, size: Size) -> dict:
    return {"pitch": float(rng.uniform(8.5, 10.5)), "warp": (0.17, 0.27, 0.50), "weft": (0.74, 0.74, 0.70)}


def _weave(
    size: Size,
    pitch: float,
    py: float,
    px: float,
    warp_var,
    weft_var,
    fibre_v,
    fibre_h,
    warp,
    weft,
    missing: np.ndarray | None = None,
) -> np.ndarray:
    """Shade the weave: in each cell either the warp (vertical) or the weft (horizontal) thread is on
    top, bright mid-float and darker where it dives under its neighbour. ``missing`` removes weft."""
    yy, xx = sh.grid(size)
    u, v = (xx + px) / pitch, (yy + py) / pitch
    iu, iv = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - iu, v - iv
    warp_top = (iu + iv) % 2 == 0
    across_w = np.sqrt(np.clip(1 - ((fu - 0.5) / 0.45) ** 2, 0, 1))
    across_f = np.sqrt(np.clip(1 - ((fv - 0.5) / 0.45) ** 2, 0, 1))
    # Twisted yarn shows fine diagonal ridges along each thread.
    twist_w = 0.07 * np.sin(2 * np.pi * (3 * v + 1.2 * u))
    twist_f = 0.07 * np.sin(2 * np.pi * (3 * u - 1.2 * v))
    warp_b = across_w * (0.6 + 0.4 * np.sin(np.pi * fv)) * (1 + warp_var[iu % len(warp_var)] + fibre_v + twist_w)
    weft_b = across_f * (0.6 + 0.4 * np.sin(np.pi * fu)) * (1 + weft_var[iv % len(weft_var)] + fibre_h + twist_f)
    if missing is not None:
        weft_b = weft_b * (1 - missing)
        warp_b = warp_b * (1 - 0.25 * missing)  # an unsupported warp sags into shadow
    warp_c, weft_c = np.asarray(warp), np.asarray(weft)
    top = np.where(warp_top[:, :, None], warp_b[:, :, None] * warp_c, weft_b[:, :, None] * weft_c)
    under = np.where(warp_top[:, :, None], 0.45 * weft_b[:, :, None] * weft_c, 0.45 * warp_b[:, :, None] * warp_c)
    cover = np.where(warp_top, across_w, across_f)[:, :, None]
    img = top + (1 - cover) * under + np.asarray(BACKING) * (1 - cover) * 0.5
    return img.astype(np.float32)


def render(design: dict, rng: np.random.Generator, size: Size) -> Scene:
    s = min(size) / 256
    pitch = design["pitch"] * s * rng.uniform(0.98, 1.02)  # web tension stretches the weave slightly
    params = {
        "pitch": pitch,
        "py": rng.uniform(0, 2 * pitch),
        "px": rng.uniform(0, 2 * pitch),
        "warp_var": rng.normal(0, 0.06, 97),
        "weft_var": rng.normal(0, 0.06, 97),
        "fibre_v": 0.06 * sh.noise(rng, size, (3 * s, 0.4)),
        "fibre_h": 0.06 * sh.noise(rng, size, (0.4, 3 * s)),
        "warp": design["warp"],
        "weft": design["weft"],
    }
    img = _weave(size, **params)
    return Scene(np.clip(img, 0, 1), photometric(rng, size, 3, gradient=0.1), {"weave": params})


def hole(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = max(3.0, (4.5 + 12 * u) * s)
    cy, cx = sh.inside(rng, scene.size, r + 3)
    # A ragged edge: a smooth blob with frayed fibres cut out of its rim.
    alpha = sh.blob(rng, scene.size, cy, cx, r, 0.5)
    ragged = ndimage.gaussian_filter(alpha, 1.5 * s) * (1 + 0.6 * sh.noise(rng, scene.size, 0.7))
    alpha = np.clip((ragged - 0.45) * 4, 0, 1)
    return blend(scene.base, BACKING, alpha), alpha > 0.25


def broken_yarn(scene: Scene, rng: np.random.Generator):
    p = scene.info["weave"]
    h, w = scene.size
    # Pick one weft thread (a row of cells) and remove it over part of the width.
    rows = np.arange(
        np.ceil((p["pitch"] * 0.5 + p["py"]) / p["pitch"]), np.floor((h - p["pitch"] * 0.5 + p["py"]) / p["pitch"])
    )
    row = rng.choice(rows) if rows.size else np.floor((h / 2 + p["py"]) / p["pitch"])
    y0, y1 = row * p["pitch"] - p["py"], (row + 1) * p["pitch"] - p["py"]
    length = rng.uniform(0.15, 0.9) * w
    x0 = rng.uniform(0, w - length)
    band = sh.rect(scene.size, y0, x0, y1, x0 + length)
    changed = _weave(scene.size, **p, missing=band)
    return changed, band > 0.25


def stain(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = (5 + 25 * u) * s
    cy, cx = sh.inside(rng, scene.size, r)
    shape = sh.blob(rng, scene.size, cy, cx, r, 0.6, rng.uniform(1, 1.6), rng.uniform(0, np.pi))
    soft = ndimage.gaussian_filter(shape, 2.5 * s)
    alpha = np.clip((soft - 0.15) / 0.85, 0, 1)[:, :, None]
    # Oil darkens and yellows the yarn: a multiplicative tint.
    tint = 1 - rng.uniform(0.2, 0.25 + 0.4 * u) * (1 - np.asarray((0.8, 0.7, 0.45)))
    tint = tint * rng.uniform(0.7, 0.95)
    return scene.base * (1 - alpha) + scene.base * tint * alpha, soft > 0.15


def crease(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    h, w = scene.size
    pts = sh.wander(
        rng,
        np.array(sh.inside(rng, scene.size, 0.2 * min(h, w))),
        rng.uniform(-np.pi, np.pi),
        (0.25 + 0.5 * u) * w,
        bend=0.05,
    )
    sigma = max(1.2, (1.5 + 2.5 * u) * s)
    d = sh.polyline_distance(scene.size, pts)
    ridge = np.exp(-(d**2) / (2 * sigma**2)) * 4 * sigma
    taper = np.clip((2.5 * sigma - d) / sigma, 0, 1)
    shade = rng.uniform(0.1, 0.25) * sh.shading(ridge) * taper
    return scene.base * (1 + shade[:, :, None]), d < 2.5 * sigma


PRODUCT = Product(
    name="woven_fabric",
    description="two-colour plain-weave fabric, RGB, not aligned; holes, broken yarn, stains, creases",
    channels=3,
    aligned=False,
    design=design,
    render=render,
    defects={"hole": hole, "broken_yarn": broken_yarn, "stain": stain, "crease": crease},
)
