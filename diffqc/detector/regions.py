"""Defect regions from an anomaly map, and the heatmap overlay that shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw
from scipy import ndimage

MAX_REGIONS = 20
# Specks of a few pixels just above the level are noise of the map, not defects an operator
# should look at; a defect that small is still reported when its peak is twice the level.
MIN_AREA_PX = 8


def find_regions(amap: np.ndarray, level: float, limit: int = MAX_REGIONS) -> list[dict]:
    """8-connected regions where ``amap`` (H, W) > ``level``, strongest first; regions smaller
    than MIN_AREA_PX count only when their peak reaches twice the level.

    Each: ``bbox`` [x0, y0, x1, y1] (inclusive-exclusive, pixels), ``area_px``, ``peak``, ``centroid`` [x, y].
    """
    above = amap > level
    if not above.any():
        return []
    labels, n = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    idx = np.arange(1, n + 1)
    peaks = ndimage.maximum(amap, labels, idx)
    areas = ndimage.sum_labels(np.ones_like(amap), labels, idx)
    centroids = ndimage.center_of_mass(above, labels, idx)
    boxes = ndimage.find_objects(labels)
    regions = [
        {"bbox": [int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop)], "area_px": int(a),
         "peak": round(float(p), 4), "centroid": [round(float(c[1]), 1), round(float(c[0]), 1)]}
        for sl, a, p, c in zip(boxes, areas, peaks, centroids, strict=True)
        if a >= MIN_AREA_PX or p >= 2 * level
    ]
    return sorted(regions, key=lambda r: -r["peak"])[:limit]


def overlay(image: np.ndarray, amap: np.ndarray, level: float, regions: list[dict], defect: bool) -> np.ndarray:
    """uint8 RGB: the image in gray, the map in colour where it rises above half the region level,
    and the regions boxed (red for a defect verdict, yellow otherwise)."""
    gray = image.mean(axis=2) if image.shape[2] > 1 else image[:, :, 0]
    base = np.repeat(gray[:, :, None], 3, axis=2) * 0.85
    lo, hi = 0.5 * level, max(2.0 * level, float(amap.max()), 1e-6)
    t = np.clip((amap - lo) / max(hi - lo, 1e-6), 0, 1)
    heat = colormaps["inferno"](t)[:, :, :3]
    alpha = (0.65 * np.sqrt(t))[:, :, None]
    out = Image.fromarray(np.round(np.clip(base * (1 - alpha) + heat * alpha, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    colour = (255, 40, 40) if defect else (255, 220, 0)
    width = max(1, round(max(out.size) / 256))
    for r in regions:
        x0, y0, x1, y1 = r["bbox"]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
    return np.asarray(out)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
