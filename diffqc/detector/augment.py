"""Training crops and the augmentations that are valid for a product.

Whether a geometric augmentation is valid depends on the data: an aligned part (a PCB in a jig)
must not be flipped or rotated, because where things are is part of what "good" means; a texture
may be flipped, and rotated by 90 degrees only when its statistics are isotropic (brick rows are
horizontal: a vertical brick wall is a defect). Both are measured from the good images.

Adaptive augmentation (the StyleGAN2-ADA idea) adds stronger, still valid, variations for small
normal sets: each is applied with probability ``CropSampler.p``, which the training loop raises
while the model overfits and lowers when it does not (see ``train.AdaController``). Aligned parts
get a small misplacement in the jig instead of a zoom (their content must stay where it belongs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from diffqc.detector.unet import coordinate_grid

# Share of the pixel variance explained by position above which a product counts as aligned.
ALIGNED_RATIO = 0.3
# Relative difference of horizontal and vertical gradient energy below which rot90 is allowed.
ISOTROPY_TOLERANCE = 0.15
# Adaptive augmentation is on by default below this many training images of a product.
ADA_MAX_IMAGES = 64
# Ranges of the adaptive augmentations at p = 1 (each one applied with probability p).
ADA_SHIFT_PX = 4  # aligned parts: misplacement in the jig
ADA_ZOOM = 1.2  # textures: scale in [1/1.2, 1.2]
ADA_BRIGHTNESS = 0.1
ADA_CONTRAST = 0.15  # log-uniform factor in [1/1.15, 1.15]
ADA_GAMMA = 1.25  # log-uniform in [1/1.25, 1.25]


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
    ada: bool = False  # adaptive augmentation (strength CropSampler.p)


class CropBatch(NamedTuple):
    """A batch of training crops (``CropSampler.sample``)."""

    images: torch.Tensor  # (B, C, crop, crop) float32 in [0, 1]
    coords: torch.Tensor | None  # (B, 2, crop, crop) coordinate channels, None without them
    labels: torch.Tensor  # (B,) long product labels


class CropSampler:
    """Draws random training crops (with augmentation) from in-memory images of one or more products."""

    def __init__(self, images: dict[int, list[np.ndarray]], aug: Augment, rng: np.random.Generator):
        self.images = images
        self.labels = sorted(images)
        self.aug = aug
        self.rng = rng
        self.p = 0.0  # adaptive augmentation probability (used when aug.ada)

    def sample(self, batch: int) -> CropBatch:
        a, rng = self.aug, self.rng
        crops, coords, labels = [], [], []
        for _ in range(batch):
            label = self.labels[rng.integers(len(self.labels))]
            pool = self.images[label]
            img = pool[rng.integers(len(pool))]
            h, w = img.shape[:2]
            y0 = int(rng.integers(0, h - a.crop + 1))
            x0 = int(rng.integers(0, w - a.crop + 1))
            adaptive = a.ada and self.p > 0  # p = 0: exactly the crops (and random stream) without ADA
            crop = self._adaptive_crop(img, y0, x0) if adaptive else img[y0 : y0 + a.crop, x0 : x0 + a.crop]
            crop = np.asarray(crop, dtype=np.float32)
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
            if adaptive:
                crop = self._adaptive_photometric(crop)
            crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
            if a.coords:
                coords.append(coordinate_grid(y0, x0, a.crop, a.crop, h, w))
            labels.append(label)
        x = torch.from_numpy(np.stack(crops))
        return CropBatch(x, torch.stack(coords) if a.coords else None, torch.tensor(labels, dtype=torch.long))

    def _adaptive_crop(self, img: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """The crop at (y0, x0), with probability p misplaced (aligned parts) or zoomed (textures)."""
        a, rng, c = self.aug, self.rng, self.aug.crop
        h, w = img.shape[:2]
        if rng.random() >= self.p:
            return img[y0 : y0 + c, x0 : x0 + c]
        if a.coords:  # content shifted against its coordinates, as a part slightly off its fixture
            dy, dx = rng.integers(-ADA_SHIFT_PX, ADA_SHIFT_PX + 1, size=2)
            ys, xs = int(np.clip(y0 + dy, 0, h - c)), int(np.clip(x0 + dx, 0, w - c))
            return img[ys : ys + c, xs : xs + c]
        size = int(np.clip(round(c * np.exp(rng.uniform(-1, 1) * np.log(ADA_ZOOM))), 8, min(h, w)))
        ys = int(np.clip(y0 + (c - size) // 2, 0, h - size))
        xs = int(np.clip(x0 + (c - size) // 2, 0, w - size))
        window = torch.from_numpy(np.ascontiguousarray(img[ys : ys + size, xs : xs + size], dtype=np.float32))
        resized = F.interpolate(
            window.permute(2, 0, 1)[None], size=(c, c), mode="bilinear", antialias=True, align_corners=False
        )
        return resized[0].permute(1, 2, 0).numpy()

    def _adaptive_photometric(self, crop: np.ndarray) -> np.ndarray:
        """Brightness, contrast and gamma, each with probability p (the ADA pipeline's colour group)."""
        rng, p = self.rng, self.p
        if rng.random() < p:
            crop = crop + rng.uniform(-ADA_BRIGHTNESS, ADA_BRIGHTNESS)
        if rng.random() < p:
            mean = crop.mean()
            crop = (crop - mean) * np.exp(rng.uniform(-1, 1) * np.log(1 + ADA_CONTRAST)) + mean
        crop = np.clip(crop, 0, 1)
        if rng.random() < p:
            crop = crop ** np.exp(rng.uniform(-1, 1) * np.log(ADA_GAMMA))
        return crop.astype(np.float32, copy=False)
