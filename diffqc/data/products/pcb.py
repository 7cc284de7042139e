"""Bare printed circuit board in a jig (RGB, aligned): solder mask, traces, HASL pads, vias, silkscreen.

The layout is fixed by the seed; each board sits in the jig with a sub-pixel shift, and its
pads carry a slightly different solder volume.
"""

from __future__ import annotations

import numpy as np

from diffqc.data import shapes as sh
from diffqc.data.products._base import Product, Scene, Size, blend, photometric

MASK_GREEN = (0.09, 0.32, 0.17)
TRACE_GREEN = (0.17, 0.47, 0.25)
SOLDER = (0.70, 0.71, 0.70)
COPPER = (0.80, 0.52, 0.28)
GOLD = (0.80, 0.64, 0.33)
SILK = (0.90, 0.91, 0.87)

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in design units (256 across)


def _free(box: Box, taken: list[Box], margin: float, limit: tuple[float, float]) -> bool:
    y0, x0, y1, x1 = box
    if y0 < margin or x0 < margin or y1 > limit[0] - margin or x1 > limit[1] - margin:
        return False
    return all(y1 + margin <= b[0] or b[2] + margin <= y0 or x1 + margin <= b[1] or b[3] + margin <= x0 for b in taken)


def design(rng: np.random.Generator, size: Size) -> dict:
    s = min(size) / 256
    lim = (size[0] / s, size[1] / s)
    pads: list[Box] = []
    pairs: list[tuple[int, int]] = []
    silk: list[Box] = []
    taken: list[Box] = []
    stubs: list[tuple[int, int, int]] = []  # pad index, direction (dy, dx) of its route
    # One SOIC-like IC footprint: two rows of pads facing each other.
    n, pitch, pw, ph, body = int(rng.integers(5, 8)), 10.0, 5.0, 12.0, 26.0
    wid = (n - 1) * pitch + pw
    for _ in range(100):
        y, x = rng.uniform(30, lim[0] - 30 - 2 * ph - body), rng.uniform(20, lim[1] - 20 - wid)
        if _free((y, x, y + 2 * ph + body, x + wid), taken, 8, lim):
            break
    for py, dy in ((y, -1), (y + ph + body, 1)):  # pins of the top row route up, bottom row down
        for k in range(n):
            pads.append((py, x + k * pitch, py + ph, x + k * pitch + pw))
            stubs.append((len(pads) - 1, dy, 0))
            if k:
                pairs.append((len(pads) - 2, len(pads) - 1))
    silk += [(y + ph + 3, x - 3, y + ph + body - 3, x + wid + 3)]
    taken.append((y - 25, x - 6, y + 2 * ph + body + 25, x + wid + 6))
    # Two-pad passives (resistors, capacitors), horizontal or vertical.
    for _ in range(int(rng.integers(6, 10))):
        horizontal = bool(rng.integers(2))
        a, b, gap = 9.0, 10.0, 8.0
        h_, w_ = (b, 2 * a + gap) if horizontal else (2 * a + gap, b)
        for _ in range(60):
            y, x = rng.uniform(0, lim[0] - h_), rng.uniform(0, lim[1] - w_)
            if _free((y - 4, x - 4, y + h_ + 4, x + w_ + 4), taken, 10, lim):
                break
        else:
            continue
        first = len(pads)
        if horizontal:
            pads += [(y, x, y + b, x + a), (y, x + a + gap, y + b, x + w_)]
            stubs += [(first, 0, -1), (first + 1, 0, 1)]
        else:
            pads += [(y, x, y + a, x + b), (y + a + gap, x, y + h_, x + b)]
            stubs += [(first, -1, 0), (first + 1, 1, 0)]
        pairs.append((first, first + 1))
        silk.append((y - 3, x - 3, y + h_ + 3, x + w_ + 3))
        taken.append((y - 4, x - 4, y + h_ + 4, x + w_ + 4))
    # Each pad is routed out by a stub, a bend, and ends on a via.
    traces: list[Box] = []
    vias: list[tuple[float, float]] = []
    tw = 3.0
    for idx, dy, dx in stubs:
        y0, x0, y1, x1 = pads[idx]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        run = rng.uniform(10, 30)
        ey = cy + dy * ((y1 - y0) / 2 + run)
        ex = cx + dx * ((x1 - x0) / 2 + run)
        side = rng.uniform(-40, 40)
        ty, tx = (ey, ex + side) if dy else (ey + side, ex)
        ty, tx = float(np.clip(ty, 6, lim[0] - 6)), float(np.clip(tx, 6, lim[1] - 6))
        traces.append((min(cy, ey) - tw / 2, min(cx, ex) - tw / 2, max(cy, ey) + tw / 2, max(cx, ex) + tw / 2))
        traces.append((min(ey, ty) - tw / 2, min(ex, tx) - tw / 2, max(ey, ty) + tw / 2, max(ex, tx) + tw / 2))
        vias.append((ty, tx))
    # Designator "text": tiny 3x5 glyphs in silkscreen next to a few footprints.
    glyphs = []
    for box in silk[:4]:
        gy, gx = box[0] - 9, box[1]
        for c in range(int(rng.integers(2, 4))):
            bits = rng.integers(0, 2, (5, 3))
            for r, q in np.argwhere(bits):
                glyphs.append((gy + r * 1.3, gx + c * 5 + q * 1.3, gy + (r + 1) * 1.3, gx + c * 5 + (q + 1) * 1.3))
    return {"pads": pads, "pairs": pairs, "silk": silk, "traces": traces, "vias": vias, "glyphs": glyphs}


def _px(box: Box, s: float, dy: float, dx: float) -> Box:
    return box[0] * s + dy, box[1] * s + dx, box[2] * s + dy, box[3] * s + dx


def _outline(size: Size, box: Box, t: float) -> np.ndarray:
    y0, x0, y1, x1 = box
    edges = [(y0, x0, y0 + t, x1), (y1 - t, x0, y1, x1), (y0, x0, y1, x0 + t), (y0, x1 - t, y1, x1)]
    return np.maximum.reduce([sh.rect(size, *e) for e in edges])


def render(design: dict, rng: np.random.Generator, size: Size) -> Scene:
    s = min(size) / 256
    dy, dx = rng.uniform(-2, 2, 2) * s  # placement in the jig
    yy, xx = sh.grid(size)
    weave = 0.018 * np.sin(2 * np.pi * (xx - dx) / (7 * s)) * np.sin(2 * np.pi * (yy - dy) / (7 * s))
    img = np.empty((*size, 3), np.float32)
    img[:] = MASK_GREEN
    img += (weave + 0.008 * sh.noise(rng, size, 0.8))[:, :, None]
    traces = np.maximum.reduce([sh.rect(size, *_px(b, s, dy, dx)) for b in design["traces"]])
    img = blend(img, TRACE_GREEN, traces)
    silk = np.maximum.reduce(
        [_outline(size, _px(b, s, dy, dx), 1.3 * s) for b in design["silk"]]
        + [sh.rect(size, *_px(g, s, dy, dx)) for g in design["glyphs"]]
    )
    img = blend(img, SILK, 0.95 * silk)
    centres = [(vy * s + dy, vx * s + dx) for vy, vx in design["vias"]]
    img = blend(img, GOLD, np.maximum.reduce([sh.disk(size, cy, cx, 3.6 * s) for cy, cx in centres]))
    img = blend(img, (0.03, 0.03, 0.03), np.maximum.reduce([sh.disk(size, cy, cx, 1.6 * s) for cy, cx in centres]))
    pads = [_px(b, s, dy, dx) for b in design["pads"]]
    for y0, x0, y1, x1 in pads:
        # Work in the pad's window only: a board has dozens of pads.
        wy0, wx0 = max(int(y0) - 1, 0), max(int(x0) - 1, 0)
        wy1, wx1 = min(int(y1) + 2, size[0]), min(int(x1) + 2, size[1])
        win = (wy1 - wy0, wx1 - wx0)
        cov = sh.rect(win, y0 - wy0, x0 - wx0, y1 - wy0, x1 - wx0)
        # Reflowed solder is a low dome: a highlight up-left, a shade down-right; volume varies per pad.
        py, px = yy[wy0:wy1, wx0:wx1], xx[wy0:wy1, wx0:wx1]
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        dome = np.exp(-(((py - cy + 0.3 * ry) / ry) ** 2 + ((px - cx + 0.3 * rx) / rx) ** 2))
        shade = np.clip(((py - cy) / ry + (px - cx) / rx) / 2, 0, 1)
        color = np.asarray(SOLDER) + (rng.uniform(0.08, 0.2) * dome - 0.12 * shade)[:, :, None]
        img[wy0:wy1, wx0:wx1] = blend(img[wy0:wy1, wx0:wx1], np.clip(color, 0, 1), cov)
    info = {"pads": pads, "pairs": design["pairs"], "traces": traces}
    return Scene(np.clip(img, 0, 1), photometric(rng, size, 3), info)


def missing_solder(scene: Scene, rng: np.random.Generator):
    y0, x0, y1, x1 = scene.info["pads"][int(rng.integers(len(scene.info["pads"])))]
    # Anything from a starved half pad to a fully bare one.
    f = rng.uniform(0.4, 1.0)
    side = int(rng.integers(4))
    if side == 0:
        y1 = y0 + f * (y1 - y0)
    elif side == 1:
        y0 = y1 - f * (y1 - y0)
    elif side == 2:
        x1 = x0 + f * (x1 - x0)
    else:
        x0 = x1 - f * (x1 - x0)
    cov = sh.rect(scene.size, y0, x0, y1, x1)
    copper = np.asarray(COPPER) * (1 + 0.03 * sh.noise(rng, scene.size, 1.0))[:, :, None]
    return blend(scene.base, copper, cov), cov > 0.05


def solder_bridge(scene: Scene, rng: np.random.Generator):
    pads = scene.info["pads"]
    a, b = scene.info["pairs"][int(rng.integers(len(scene.info["pairs"])))]
    (ay0, ax0, ay1, ax1), (by0, bx0, _, _) = pads[a], pads[b]
    s = scene.scale
    if bx0 > ax1:  # side by side: the bridge spans the horizontal gap
        length = rng.uniform(0.3, 0.9) * (ay1 - ay0)
        start = rng.uniform(ay0, ay1 - length)
        alpha = sh.rect(scene.size, start, ax1, start + length, bx0)
        cy, cx, r = start + length / 2, (ax1 + bx0) / 2, min(length / 2, (bx0 - ax1) * 0.6)
    else:  # stacked: the bridge spans the vertical gap
        length = rng.uniform(0.3, 0.9) * (ax1 - ax0)
        start = rng.uniform(ax0, ax1 - length)
        alpha = sh.rect(scene.size, ay1, start, by0, start + length)
        cy, cx, r = (ay1 + by0) / 2, start + length / 2, min(length / 2, (by0 - ay1) * 0.6)
    alpha = np.maximum(alpha, sh.blob(rng, scene.size, cy, cx, max(r, 1.5 * s), 0.3))
    yy, xx = sh.grid(scene.size)
    glint = 0.15 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * max(r, 1.0) ** 2))
    color = np.clip(np.asarray(SOLDER) + glint[:, :, None], 0, 1)
    return blend(scene.base, color, alpha), alpha > 0.25


def scratch(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    h, w = scene.size
    pts = sh.wander(
        rng,
        np.array(sh.inside(rng, scene.size, 0.1 * min(h, w))),
        rng.uniform(-np.pi, np.pi),
        (0.1 + 0.3 * u) * w,
        bend=0.05,
    )
    alpha = sh.line(scene.size, pts, max(1.0, (1 + 2 * u) * s))
    # Through the solder mask: bright copper on a trace, pale scraped mask elsewhere.
    on_trace = scene.info["traces"][:, :, None]
    color = on_trace * np.asarray(COPPER) * 1.1 + (1 - on_trace) * np.asarray((0.45, 0.64, 0.5))
    return blend(scene.base, np.clip(color, 0, 1), 0.9 * alpha), alpha > 0.25


def contamination(scene: Scene, rng: np.random.Generator):
    s, u = scene.scale, rng.uniform()
    kind = int(rng.integers(3))
    if kind == 0:  # flux residue: a translucent amber film
        r = (5 + 17 * u) * s
        cy, cx = sh.inside(rng, scene.size, r)
        alpha = sh.blob(rng, scene.size, cy, cx, r, 0.5, rng.uniform(1, 1.8), rng.uniform(0, np.pi))
        return blend(scene.base, (0.55, 0.42, 0.15), rng.uniform(0.35, 0.65) * alpha), alpha > 0.25
    if kind == 1:  # a fibre lying on the board
        pts = sh.wander(
            rng,
            np.array(sh.inside(rng, scene.size, 20 * s)),
            rng.uniform(-np.pi, np.pi),
            (10 + 25 * u) * s,
            bend=0.3,
            step=2,
        )
        alpha = sh.line(scene.size, pts, max(1.0, 1.2 * s))
    else:  # a dust particle
        r = max(1.2, (1.5 + 3 * u) * s)
        cy, cx = sh.inside(rng, scene.size, r + 2)
        alpha = sh.blob(rng, scene.size, cy, cx, r, 0.4)
    return blend(scene.base, (0.06, 0.05, 0.04), alpha), alpha > 0.25


PRODUCT = Product(
    name="pcb",
    description="bare PCB in a jig, RGB, aligned; missing solder, solder bridges, scratches, contamination",
    channels=3,
    aligned=True,
    design=design,
    render=render,
    defects={
        "missing_solder": missing_solder,
        "solder_bridge": solder_bridge,
        "scratch": scratch,
        "contamination": contamination,
    },
)
