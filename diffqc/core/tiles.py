"""Tile geometry: overlapping windows over a large image and the weights that stitch them seamlessly.

Each tile's output is weighted by a raised-cosine (Hann) ramp across the overlap on every side
that borders another tile, and the accumulated sum is divided by the accumulated weight: tile
borders (where convolutions see padding) fade out, and any map that is constant across tiles
stays exactly constant. Preprocessing cuts tiles with these windows, the detector and the
inference service stitch with these weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Window = tuple[int, int, int, int]  # y0, x0, h, w


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile.overlap must be in [0, tile.size), got overlap={overlap}, size={tile}")
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(h: int, w: int, tile: int, overlap: int) -> list[Window]:
    """Every window of an (h, w) image; all the same shape (edge tiles shift inward), so they batch."""
    return [
        (y0, x0, min(tile, h), min(tile, w))
        for y0 in tile_starts(h, tile, overlap)
        for x0 in tile_starts(w, tile, overlap)
    ]


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool) -> NDArray[np.float32]:
    r = np.ones(n, dtype=np.float32)
    m = min(overlap, n // 2)
    if m > 0:
        # Strictly positive: every pixel keeps some weight even where only one tile reaches.
        rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(m, dtype=np.float32) + 0.5) / m)).astype(np.float32)
        if ramp_start:
            r[:m] = rise
        if ramp_end:
            r[n - m :] = rise[::-1]
    return r


def window_weight(win: Window, full: tuple[int, int], overlap: int) -> NDArray[np.float32]:
    """(h, w) float32 stitching weight of window ``win`` inside an image of shape ``full``."""
    y0, x0, h, w = win
    wy = _ramp(h, overlap, y0 > 0, y0 + h < full[0])
    wx = _ramp(w, overlap, x0 > 0, x0 + w < full[1])
    weight: NDArray[np.float32] = wy[:, None] * wx[None, :]
    return weight


def stitch(
    windows: Sequence[Window], outputs: Sequence[NDArray[Any]], full: tuple[int, int], overlap: int
) -> NDArray[np.float32]:
    """(K, H, W) float32: the (K, h, w) ``outputs`` of ``windows`` blended with their weights (seamless)."""
    channels = outputs[0].shape[0]
    total = np.zeros((channels, *full), dtype=np.float32)
    weight = np.zeros(full, dtype=np.float32)
    for (y0, x0, h, w), out in zip(windows, outputs, strict=True):
        wgt = window_weight((y0, x0, h, w), full, overlap)
        total[:, y0 : y0 + h, x0 : x0 + w] += wgt * out.astype(np.float32, copy=False)
        weight[y0 : y0 + h, x0 : x0 + w] += wgt
    stitched: NDArray[np.float32] = total / np.maximum(weight, np.float32(1e-12))
    return stitched
