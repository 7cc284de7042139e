"""Running the detector over overlapping tiles and stitching the outputs, with memory bounded by the
tile size: the input, the K output maps and one weight map, plus one batch of tiles in the network.
Everything stays on the image's device (a frame crosses to a GPU once, not tile by tile). The
geometry and the stitching weights are ``diffqc.core.tiles``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffqc.core.tiles import Window, tile_windows, window_weight


def run_tiled(
    image: torch.Tensor | np.ndarray,
    fn: Callable[[torch.Tensor, list[Window]], torch.Tensor],
    tile: int,
    overlap: int,
    batch: int = 4,
) -> torch.Tensor:
    """Apply ``fn`` (tiles (B, C, h, w), their windows -> (B, K, h, w)) over one image (C, H, W),
    ``batch`` tiles per call.

    Returns the stitched (K, H, W) float32 map, on the image's device.
    """
    img = image if isinstance(image, torch.Tensor) else torch.from_numpy(image)  # stays on its device
    _, h, w = img.shape
    device = img.device
    windows = tile_windows(h, w, tile, overlap)
    acc: torch.Tensor | None = None
    weight = torch.zeros(h, w, device=device)
    # Every window has the same shape (edge tiles are shifted inward), so tiles batch together.
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        tiles = torch.stack([img[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0, th, tw in group]).float()
        out = fn(tiles, group)
        if acc is None:
            acc = torch.zeros(out.shape[1], h, w, device=device)
        for (y0, x0, th, tw), o in zip(group, out, strict=True):
            wgt = torch.from_numpy(window_weight((y0, x0, th, tw), (h, w), overlap)).to(device)
            acc[:, y0 : y0 + th, x0 : x0 + tw] += o * wgt
            weight[y0 : y0 + th, x0 : x0 + tw] += wgt
    assert acc is not None
    return acc.div_(weight)  # in place: no second full-size copy of the maps
