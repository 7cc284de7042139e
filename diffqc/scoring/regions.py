"""Defect regions in original frame coordinates, and the heatmap overlay PNG.

The anomaly map covers the normalized image (the frame resized to the product's spec and padded).
Its geometry follows from the frame's shape and the map's shape alone (``Letterbox.fit``), so
regions are found on the map's content area (padding is never a defect), with the detector's own
rule (``diffqc.core.regions.find_regions``: 8-connected pixels above the region level), and
their boxes and areas are mapped back to original pixels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from diffqc.core.regions import MAX_REGIONS, find_regions, overlay
from diffqc.preprocess.geometry import Letterbox
from diffqc.preprocess.normalize import letterbox


def map_geometry(map_shape: tuple[int, int], frame_shape: tuple[int, int] | None) -> Letterbox:
    """The letterbox that put a frame of ``frame_shape`` (H, W) into a map of ``map_shape``; a frame
    of unknown shape is taken to be the map's own size."""
    h, w = map_shape
    if not frame_shape or not frame_shape[0] or not frame_shape[1]:
        return Letterbox.fit(h, w, h, w)
    return Letterbox.fit(frame_shape[0], frame_shape[1], h, w)


def content_regions(amap: np.ndarray, box: Letterbox, level: float, limit: int = MAX_REGIONS) -> list[dict]:
    """Regions of the map's content area, in content coordinates (``find_regions`` format)."""
    return find_regions(np.asarray(amap, dtype=np.float32)[box.content], level, limit)


def to_original(regions: list[dict], box: Letterbox) -> list[dict]:
    """``find_regions`` output in content coordinates -> the inspection row's region format in
    original frame pixels: {"x", "y", "width", "height", "area_px", "peak_score"}."""
    out = []
    for region in regions:
        x0, y0, x1, y1 = region["bbox"]
        x, y, w, h = box.box_to_original(x0 + box.pad_left, y0 + box.pad_top, x1 + box.pad_left, y1 + box.pad_top)
        out.append(
            {
                "x": x,
                "y": y,
                "width": w,
                "height": h,
                "area_px": box.area_to_original(region["area_px"]),
                "peak_score": float(region["peak"]),
            }
        )
    return out


def heatmap_png(
    amap: np.ndarray, box: Letterbox, level: float, regions: list[dict], defect: bool, image: np.ndarray | None = None
) -> bytes:
    """PNG of the map over the frame (or over mid-gray when the image is not at hand), at the map's
    content resolution, with ``regions`` (content coordinates) boxed."""
    content = np.asarray(amap, dtype=np.float32)[box.content]
    h, w = content.shape
    if image is None:
        base = np.full((h, w, 1), 0.5, dtype=np.float32)
    else:
        # The same resize preprocessing made (a rounding pixel short on one side is edge-padded).
        base = letterbox(image, Letterbox.fit(image.shape[0], image.shape[1], h, w))
    rgb = overlay(base, content, level, regions, defect)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
