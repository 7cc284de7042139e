"""The region rule (where an anomaly map outlines a defect) and the heatmap overlay that shows it.

One rule for the detector and the platform: 8-connected pixels above the region level, specks
below MIN_AREA_PX dropped unless their peak reaches twice the level.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from scipy import ndimage

MAX_REGIONS = 20
# Specks of a few pixels just above the level are noise of the map, not defects an operator
# should look at; a defect that small is still reported when its peak is twice the level.
MIN_AREA_PX = 8
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def find_regions(amap: NDArray[np.floating[Any]], level: float, limit: int = MAX_REGIONS) -> list[dict[str, Any]]:
    """8-connected regions where ``amap`` (H, W) > ``level``, strongest first; regions smaller
    than MIN_AREA_PX count only when their peak reaches twice the level.

    Each: ``bbox`` [x0, y0, x1, y1] (inclusive-exclusive, pixels), ``area_px``, ``peak``, ``centroid`` [x, y].
    """
    above = amap > level
    if not above.any():
        return []
    labels, n = ndimage.label(above, structure=_EIGHT_CONNECTED)
    idx = np.arange(1, n + 1)
    peaks = ndimage.maximum(amap, labels, idx)
    areas = ndimage.sum_labels(np.ones_like(amap), labels, idx)
    centroids = ndimage.center_of_mass(above, labels, idx)
    boxes = ndimage.find_objects(labels)
    regions: list[dict[str, Any]] = [
        {
            "bbox": [int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop)],
            "area_px": int(a),
            "peak": round(float(p), 4),
            "centroid": [round(float(c[1]), 1), round(float(c[0]), 1)],
        }
        for sl, a, p, c in zip(boxes, areas, peaks, centroids, strict=True)
        if a >= MIN_AREA_PX or p >= 2 * level
    ]
    return sorted(regions, key=lambda r: -r["peak"])[:limit]


def largest_region_mass(amap: NDArray[np.floating[Any]], level: float) -> float:
    """Sum of (map - level) over the largest 8-connected region where map > level."""
    above = amap > level
    if not above.any():
        return 0.0
    labels, n = ndimage.label(above, structure=_EIGHT_CONNECTED)
    idx = np.arange(1, n + 1)
    # sum(map - level) over a region = sum(map) - level * area: no frame-sized temporary.
    masses = ndimage.sum_labels(amap, labels, idx) - level * ndimage.sum_labels(above, labels, idx)
    return float(np.max(masses))


@cache
def _inferno() -> NDArray[np.float64]:
    """matplotlib's 'inferno' colour table (256 RGB rows), shipped as data so scoring needs no matplotlib."""
    return np.array(json.loads(resources.files(__package__).joinpath("inferno.json").read_text()))


def overlay(
    image: NDArray[np.floating[Any]],
    amap: NDArray[np.floating[Any]],
    level: float,
    regions: list[dict[str, Any]],
    defect: bool,
) -> NDArray[np.uint8]:
    """uint8 RGB: the image in gray, the map in colour where it rises above half the region level,
    and the regions boxed (red for a defect verdict, yellow otherwise)."""
    gray = image.mean(axis=2) if image.shape[2] > 1 else image[:, :, 0]
    base = np.repeat(gray[:, :, None], 3, axis=2) * 0.85
    lo, hi = 0.5 * level, max(2.0 * level, float(amap.max()), 1e-6)
    t = np.clip((amap - lo) / max(hi - lo, 1e-6), 0, 1)
    table = _inferno()
    heat = table[np.minimum((t * len(table)).astype(np.int64), len(table) - 1)]  # as matplotlib indexes it
    alpha = (0.65 * np.sqrt(t))[:, :, None]
    out = Image.fromarray(np.round(np.clip(base * (1 - alpha) + heat * alpha, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    colour = (255, 40, 40) if defect else (255, 220, 0)
    width = max(1, round(max(out.size) / 256))
    for r in regions:
        x0, y0, x1, y1 = r["bbox"]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
    return np.asarray(out)


def save_png(path: str | Path, rgb: NDArray[np.uint8]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
