"""Letterbox geometry: how an original frame maps into the normalized image, and back.

The original (H, W) is resized by one factor ``scale`` (aspect ratio kept) so that it fits the
spec's (height, width), then centred with padding. The geometry depends only on the two shapes,
so scoring recomputes it from the frame's shape and the anomaly map's shape: the map needs no
side channel to be mapped back to original frame coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Letterbox:
    src_h: int
    src_w: int
    dst_h: int
    dst_w: int
    scale: float  # normalized = original * scale
    new_h: int  # size of the resized content inside the normalized image
    new_w: int
    pad_top: int
    pad_left: int

    @classmethod
    def fit(cls, src_h: int, src_w: int, dst_h: int, dst_w: int) -> Letterbox:
        """Resize (src_h, src_w) to fit (dst_h, dst_w) keeping the aspect ratio, padding centred."""
        if min(src_h, src_w, dst_h, dst_w) <= 0:
            raise ValueError(f"shapes must be positive: source {src_w}x{src_h}, target {dst_w}x{dst_h}")
        scale = min(dst_h / src_h, dst_w / src_w)
        new_h = min(dst_h, max(1, round(src_h * scale)))
        new_w = min(dst_w, max(1, round(src_w * scale)))
        return cls(src_h, src_w, dst_h, dst_w, scale, new_h, new_w, (dst_h - new_h) // 2, (dst_w - new_w) // 2)

    @property
    def identity(self) -> bool:
        return (self.src_h, self.src_w) == (self.dst_h, self.dst_w)

    @property
    def content(self) -> tuple[slice, slice]:
        """(rows, columns) of the normalized image that hold the resized frame (not padding)."""
        return (slice(self.pad_top, self.pad_top + self.new_h), slice(self.pad_left, self.pad_left + self.new_w))

    def box_to_original(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """A box [x0, x1) x [y0, y1) in normalized pixels -> (x, y, width, height) in original pixels.

        The box is widened to whole original pixels (floor / ceil) and clipped to the frame, so it
        always covers what the normalized box covered.
        """
        sx, sy = self.new_w / self.src_w, self.new_h / self.src_h  # per axis: rounding made them differ
        ox0 = max(0, math.floor((x0 - self.pad_left) / sx + 1e-6))
        oy0 = max(0, math.floor((y0 - self.pad_top) / sy + 1e-6))
        ox1 = min(self.src_w, math.ceil((x1 - self.pad_left) / sx - 1e-6))
        oy1 = min(self.src_h, math.ceil((y1 - self.pad_top) / sy - 1e-6))
        return ox0, oy0, max(1, ox1 - ox0), max(1, oy1 - oy0)

    def area_to_original(self, area_px: float) -> int:
        """A pixel count in the normalized image -> the original pixels it stands for (at least 1)."""
        return max(1, round(area_px * (self.src_w / self.new_w) * (self.src_h / self.new_h)))
