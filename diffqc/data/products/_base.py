"""What a procedural product is: a fixed design, a per-part render, and defects drawn on top.

Rendering one image goes: design (fixed per product and seed: aligned parts share it) ->
render (one part: placement shift, texture, solder volume ...) -> optional defect (changes
pixels only inside its mask) -> photometric finish (lighting, white balance, sensor noise,
identical with or without the defect). So a mask is exact: outside it, the defective image
equals the good image of the same part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Size = tuple[int, int]


@dataclass
class Scene:
    """One rendered part before lighting and noise; ``info`` carries geometry defects need."""

    base: np.ndarray  # float32 HxWxC in [0, 1]
    finish: Callable[[np.ndarray], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> Size:
        return self.base.shape[0], self.base.shape[1]

    @property
    def scale(self) -> float:
        # Feature sizes are designed at 256 px and scale with the image.
        return min(self.size) / 256.0


# A defect takes the scene and its own random stream and returns (changed base, bool mask).
Defect = Callable[[Scene, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Product:
    name: str
    description: str
    channels: int
    aligned: bool  # fixtured parts: the same pixel shows the same feature in every good image
    design: Callable[[np.random.Generator, Size], Any]
    render: Callable[[Any, np.random.Generator, Size], Scene]
    defects: dict[str, Defect]


def photometric(
    rng: np.random.Generator,
    size: Size,
    channels: int,
    gain: tuple[float, float] = (0.92, 1.08),
    gradient: float = 0.06,
    tint: float = 0.03,
    noise: tuple[float, float] = (0.006, 0.015),
) -> Callable[[np.ndarray], np.ndarray]:
    """Draw one part's lighting and sensor noise now and return a function that applies them,
    so the good and the defective version of a part get exactly the same finish."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = rng.uniform(*gain)
    a, b = rng.uniform(-1, 1, 2) * gradient
    field_ = g * (1 + a * (xx / w - 0.5) + b * (yy / h - 0.5))
    white = (1 + rng.uniform(-tint, tint, channels)).astype(np.float32) if channels == 3 else np.ones(1, np.float32)
    sigma = rng.uniform(*noise)
    grain = rng.normal(0, sigma, (h, w, channels)).astype(np.float32)

    def finish(img: np.ndarray) -> np.ndarray:
        return np.clip(img * field_[:, :, None] * white + grain, 0, 1).astype(np.float32)

    return finish


def blend(img: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    """Paint ``color`` (scalar, per-channel tuple or HxWxC array) over ``img`` with opacity ``alpha``."""
    alpha = np.clip(alpha, 0, 1)[:, :, None]
    color = np.asarray(color, dtype=np.float32)
    if color.ndim == 1:
        color = color[None, None, :]
    return (img * (1 - alpha) + color * alpha).astype(np.float32)
