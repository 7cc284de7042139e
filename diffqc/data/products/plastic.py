"""Injection-moulded housing on a conveyor (RGB, aligned): stippled mould texture, boss, ribs,
recessed label, gloss that moves with the light; flash, short shots, sink marks, black specks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffqc.data import shapes as sh
from diffqc.data.products._base import Product, Scene, Size, blend, photometric

PART = (0.72, 0.70, 0.65)
BELT = (0.10, 0.10, 0.11)


def _round_box(yy, xx, box, radius):
    """Signed distance to a rounded rectangle (negative inside)."""
    y0, x0, y1, x1 = box
    qy = np.abs(yy - (y0 + y1) / 2) - ((y1 - y0) / 2 - radius)
    qx = np.abs(xx - (x0 + x1) / 2) - ((x1 - x0) / 2 - radius)
    outside = np.hypot(np.maximum(qy, 0), np.maximum(qx, 0))
    return outside + np.minimum(np.maximum(qy, qx), 0) - radius


def design(rng: np.random.Generator, size: Size) -> dict:
    s = min(size) / 256
    h, w = size[0] / s, size[1] / s
    box = (0.1 * h, 0.08 * w, 0.9 * h, 0.92 * w)
    pad = 8
    # The mould's stipple is cut into the steel: identical on every part, so it is fixed here.
    texture = sh.noise(rng, (size[0] + 2 * pad, size[1] + 2 * pad), 0.7 * s)
    return {
        "box": box,
        "radius": 18.0,
        "texture": texture,
        "pad": pad,
        "boss": (0.32 * h + rng.uniform(-8, 8), 0.3 * w + rng.uniform(-8, 8), 15.0, 6.0),
        "ribs": [(0.66 * h, 0.18 * w, 0.66 * h + 4, 0.52 * w), (0.74 * h, 0.18 * w, 0.74 * h + 4, 0.52 * w)],
        "label": (0.56 * h, 0.6 * w, 0.8 * h, 0.86 * w),
        "pins": [(0.22 * h, 0.62 * w), (0.22 * h, 0.8 * w), (0.45 * h, 0.5 * w)],
    }


def render(design: dict, rng: np.random.Generator, size: Size) -> Scene:
    s = min(size) / 256
    dy, dx = rng.uniform(-2, 2, 2) * s  # placement on the conveyor stop
    yy, xx = sh.grid(size)
    py, px = yy - dy, xx - dx  # design coordinates (in pixels) of each pixel
    box = tuple(v * s for v in design["box"])
    sdf = _round_box(py, px, box, design["radius"] * s)
    part = np.clip(0.5 - sdf, 0, 1)

    # Relief: raised boss with a hole, raised ribs, a recessed label, faint ejector-pin rings.
    by, bx, br, bh = (v * s for v in design["boss"])
    height = 1.2 * sh.disk(size, by + dy, bx + dx, br) - 2.0 * sh.disk(size, by + dy, bx + dx, bh)
    for rib in design["ribs"]:
        height += 0.8 * sh.rect(size, *(v * s + o for v, o in zip(rib, (dy, dx, dy, dx), strict=True)))
    label = sh.rect(size, *(v * s + o for v, o in zip(design["label"], (dy, dx, dy, dx), strict=True)))
    height -= 0.6 * label
    for ey, ex in design["pins"]:
        height += 0.25 * (
            sh.disk(size, ey * s + dy, ex * s + dx, 4 * s) - sh.disk(size, ey * s + dy, ex * s + dx, 3 * s)
        )
    relief = 0.25 * sh.shading(ndimage.gaussian_filter(3 * height, 1.0 * s))

    pad = design["pad"]
    tex = ndimage.shift(design["texture"], (dy, dx), order=1, mode="nearest")[pad:-pad, pad:-pad]
    hy, hx = rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1]
    gloss = rng.uniform(0.03, 0.12) * np.exp(-((yy - hy) ** 2 + (xx - hx) ** 2) / (2 * (0.3 * size[1]) ** 2))
    shade = 1 + 0.035 * tex * (1 - 0.7 * label) + relief
    part_img = np.asarray(PART) * shade[:, :, None] + gloss[:, :, None]

    belt = np.asarray(BELT) * (1 + 0.15 * sh.noise(rng, size, 1.0))[:, :, None]
    shadow = ndimage.shift(ndimage.gaussian_filter(part, 3 * s), (3 * s, 3 * s), order=1)
    belt = belt * (1 - 0.5 * shadow)[:, :, None]
    img = blend(belt.astype(np.float32), part_img, part)
    info = {"sdf": sdf, "part": part, "box": box, "radius": design["radius"] * s, "belt": belt, "part_img": part_img}
    return Scene(np.clip(img, 0, 1), photometric(rng, size, 3), info)


def flash(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    y0, x0, y1, x1 = scene.info["box"]
    rr = scene.info["radius"]
    yy, xx = sh.grid(scene.size)
    side = int(rng.integers(4))
    # Along-edge coordinate and its straight range (corners excluded).
    along, lo, hi = (xx, x0 + rr, x1 - rr) if side < 2 else (yy, y0 + rr, y1 - rr)
    near = (
        (yy < (y0 + y1) / 2)
        if side == 0
        else (yy > (y0 + y1) / 2)
        if side == 1
        else (xx < (x0 + x1) / 2)
        if side == 2
        else (xx > (x0 + x1) / 2)
    )
    length = (0.1 + 0.3 * u) * (hi - lo)
    c = rng.uniform(lo + length / 2, hi - length / 2)
    taper = np.clip(1 - ((along - c) / (length / 2)) ** 2, 0, 1) ** 0.5
    wave = (
        1
        + 0.35 * np.sin(2 * np.pi * along / (9 * s) + rng.uniform(0, 6.3))
        + 0.25 * np.sin(2 * np.pi * along / (3.7 * s) + rng.uniform(0, 6.3))
    )
    thick = max(1.5, (1.5 + 6 * u) * s) * wave * taper
    sdf = scene.info["sdf"]
    alpha = np.clip(thick - sdf + 0.5, 0, 1) * (sdf > -0.5) * near * (thick > 0.3)
    color = np.asarray(PART) * 1.05
    return blend(scene.base, color, 0.9 * alpha), alpha > 0.25


def short_shot(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    y0, x0, y1, x1 = scene.info["box"]
    r = (10 + 28 * u) * s
    cy = y0 if rng.integers(2) else y1
    cx = x0 if rng.integers(2) else x1
    # The melt front stopped short of a corner: that corner is missing, the belt shows through.
    cy += (r * 0.25) * (1 if cy == y0 else -1)
    cx += (r * 0.25) * (1 if cx == x0 else -1)
    missing = sh.blob(rng, scene.size, cy, cx, r, 0.4) * scene.info["part"]
    return blend(scene.base, scene.info["belt"], missing), missing > 0.25


def sink_mark(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    r = max(4.0, (7 + 18 * u) * s)
    inner = np.argwhere(scene.info["sdf"] < -(r + 4))
    cy, cx = inner[int(rng.integers(len(inner)))] + 0.5
    yy, xx = sh.grid(scene.size)
    d = np.hypot(yy - cy, xx - cx)
    height = -(2 + 4 * u) * r * np.exp(-(d**2) / (2 * (r / 2) ** 2))
    taper = np.clip((r - d) / (0.35 * r), 0, 1)
    shade = 0.03 * sh.shading(height) * taper
    return scene.base * (1 + shade[:, :, None]), d < r


def black_spot(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    inner = np.argwhere(scene.info["sdf"] < -6 * s)
    alpha = np.zeros(scene.size, np.float32)
    if rng.uniform() < 0.7:  # specks of degraded resin
        cy, cx = inner[int(rng.integers(len(inner)))] + 0.5
        for _ in range(int(rng.integers(1, 4))):
            r = max(1.0, rng.uniform(1, 1 + 3 * u) * s)
            alpha = np.maximum(
                alpha, sh.blob(rng, scene.size, cy + rng.normal(0, 4 * s), cx + rng.normal(0, 4 * s), r, 0.3)
            )
    else:  # a burn streak dragged along the flow
        cy, cx = inner[int(rng.integers(len(inner)))] + 0.5
        pts = sh.wander(rng, np.array((cy, cx)), rng.uniform(-np.pi, np.pi), (8 + 25 * u) * s, bend=0.15, step=2)
        alpha = sh.line(scene.size, pts, max(1.0, 1.6 * s))
    alpha = alpha * scene.info["part"]
    return blend(scene.base, (0.09, 0.07, 0.05), alpha), alpha > 0.1


PRODUCT = Product(
    name="moulded_plastic",
    description="injection-moulded housing, RGB, aligned; flash, short shot, sink marks, black specks",
    channels=3,
    aligned=True,
    design=design,
    render=render,
    defects={"flash": flash, "short_shot": short_shot, "sink_mark": sink_mark, "black_spot": black_spot},
)
