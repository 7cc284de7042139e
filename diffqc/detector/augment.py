"""Training crops and the augmentations that are valid for a product.

Whether a geometric augmentation is valid depends on the data: an aligned part (a PCB in a jig)
must not be flipped or rotated, because where things are is part of what "good" means; a texture
may be flipped, and rotated by 90 degrees only when its statistics are isotropic (brick rows are
horizontal: a vertical brick wall is a defect). Both are measured from the good images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffqc.detector.unet import coordinate_grid

# Share of the pixel variance explained by position above which a product counts as aligned.
ALIGNED_RATIO = 0.3
# Relative difference of horizontal and vertical gradient energy below which rot90 is allowed.
ISOTROPY_TOLERANCE = 0.15


def _gray_small(img: np.ndarray, size: int = 64) -> np.ndarray:
    g = img.mean(axis=2)
    h, w = g.shape
    fy, fx = max(1, h // size), max(1, w // size)
    g = g[: h // fy * fy, : w // fx * fx]
    return g.reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))


def alignment_ratio(images: list[np.ndarray]) -> float:
    """Variance of the mean image over positions / mean per-position variance across images.

    Random texture crops give ~1/n (the mean image is flat); fixtured parts give a large value.
    """
    if len(images) < 2 or len({im.shape for im in images}) != 1:
        return 0.0
    stack = np.stack([_gray_small(im) for im in images])
    between = float(stack.mean(axis=0).var())
    within = float(stack.var(axis=0).mean())
    return between / max(within, 1e-12)


def is_aligned(images: list[np.ndarray]) -> bool:
    return alignment_ratio(images) > ALIGNED_RATIO


def anisotropy(images: list[np.ndarray]) -> float:
    """|Ex - Ey| / (Ex + Ey) of horizontal vs vertical gradient energy (0 = isotropic)."""
    ex = ey = 0.0
    for im in images[:32]:
        g = im.mean(axis=2)
        ex += float(np.square(np.diff(g, axis=1)).mean())
        ey += float(np.square(np.diff(g, axis=0)).mean())
    return abs(ex - ey) / max(ex + ey, 1e-12)


def is_isotropic(images: list[np.ndarray]) -> bool:
    return anisotropy(images) < ISOTROPY_TOLERANCE


@dataclass
class Augment:
    crop: int
    hflip: bool
    vflip: bool
    rot90: bool
    brightness: float
    contrast: float
    coords: bool


class CropSampler:
    """Draws random training crops (with augmentation) from in-memory images of one or more products."""

    def __init__(self, images: dict[int, list[np.ndarray]], aug: Augment, rng: np.random.Generator):
        self.images = images
        self.labels = sorted(images)
        self.aug = aug
        self.rng = rng

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        a, rng = self.aug, self.rng
        crops, coords, labels = [], [], []
        for _ in range(batch):
            label = self.labels[rng.integers(len(self.labels))]
            pool = self.images[label]
            img = pool[rng.integers(len(pool))]
            h, w = img.shape[:2]
            y0 = int(rng.integers(0, h - a.crop + 1))
            x0 = int(rng.integers(0, w - a.crop + 1))
            crop = np.asarray(img[y0 : y0 + a.crop, x0 : x0 + a.crop], dtype=np.float32)
            if a.hflip and rng.random() < 0.5:
                crop = crop[:, ::-1]
            if a.vflip and rng.random() < 0.5:
                crop = crop[::-1]
            if a.rot90:
                crop = np.rot90(crop, int(rng.integers(4)))
            if a.brightness or a.contrast:
                mean = crop.mean()
                c = 1 + rng.uniform(-a.contrast, a.contrast)
                b = rng.uniform(-a.brightness, a.brightness)
                crop = np.clip((crop - mean) * c + mean + b, 0, 1)
            crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
            if a.coords:
                coords.append(coordinate_grid(y0, x0, a.crop, a.crop, h, w))
            labels.append(label)
        x = torch.from_numpy(np.stack(crops))
        return x, (torch.stack(coords) if a.coords else None), torch.tensor(labels, dtype=torch.long)
