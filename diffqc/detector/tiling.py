"""Overlapping tiles and seamless stitching, with memory bounded by the tile size.

Each tile's output is weighted by a raised-cosine (Hann) ramp across the overlap on every side
that borders another tile, and the accumulated sum is divided by the accumulated weight: tile
borders (where convolutions see padding) fade out, and any map that is constant across tiles
stays exactly constant. Memory: the input, the K output maps and one weight map, plus one batch
of tiles in the network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

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
    return [
        (y0, x0, min(tile, h), min(tile, w))
        for y0 in tile_starts(h, tile, overlap)
        for x0 in tile_starts(w, tile, overlap)
    ]


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    r = torch.ones(n)
    m = min(overlap, n // 2)
    if m > 0:
        # Strictly positive: every pixel keeps some weight even where only one tile reaches.
        rise = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(m) + 0.5) / m)
        if ramp_start:
            r[:m] = rise
        if ramp_end:
            r[n - m :] = rise.flip(0)
    return r


def window_weight(win: Window, full: tuple[int, int], overlap: int) -> torch.Tensor:
    y0, x0, h, w = win
    wy = _ramp(h, overlap, y0 > 0, y0 + h < full[0])
    wx = _ramp(w, overlap, x0 > 0, x0 + w < full[1])
    return wy[:, None] * wx[None, :]


def run_tiled(
    image: torch.Tensor | np.ndarray,
    fn: Callable[[torch.Tensor, list[Window]], torch.Tensor],
    tile: int,
    overlap: int,
    batch: int = 4,
) -> torch.Tensor:
    """Apply ``fn`` (tiles (B, C, h, w), their windows -> (B, K, h, w)) over one image (C, H, W).

    Returns the stitched (K, H, W) float32 map.
    """
    img = torch.as_tensor(image)
    _, h, w = img.shape
    windows = tile_windows(h, w, tile, overlap)
    acc: torch.Tensor | None = None
    weight = torch.zeros(h, w)
    # Every window has the same shape (edge tiles are shifted inward), so tiles batch together.
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        tiles = torch.stack([img[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0, th, tw in group]).float()
        out = fn(tiles, group)
        if acc is None:
            acc = torch.zeros(out.shape[1], h, w)
        for (y0, x0, th, tw), o in zip(group, out, strict=True):
            wgt = window_weight((y0, x0, th, tw), (h, w), overlap)
            acc[:, y0 : y0 + th, x0 : x0 + tw] += o * wgt
            weight[y0 : y0 + th, x0 : x0 + tw] += wgt
    assert acc is not None
    return acc / weight
