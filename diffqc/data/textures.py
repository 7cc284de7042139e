"""Real-texture benchmarks: photographs shipped with scikit-image, with injected defects.

``skimage.data.brick()``, ``grass()`` and ``gravel()`` are 512x512 grayscale photographs that
no one here designed. Crops for training come from two diagonal quadrants and test crops from
the other two, so no test pixel was ever seen in training (quadrants on both diagonals keep any
lighting gradient of the photo balanced between the splits). Flips add variety; rotations are
not used, since brick courses have a direction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from diffqc.data import shapes as sh
from diffqc.data.mvtec import building, write_sample

TEXTURES = ("brick", "grass", "gravel")
Region = tuple[int, int, int, int]  # y0, x0, y1, x1


def load_photo(name: str) -> np.ndarray:
    """One of the photographs as float32 HxW in [0, 1] (offline: they ship inside scikit-image)."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose from {', '.join(TEXTURES)}")
    import skimage.data  # imported here: scikit-image is slow to import and only needed now

    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 3:
        photo = photo[..., :3].mean(axis=2)
    return (photo.astype(np.float32) / 255.0) if photo.dtype == np.uint8 else photo.astype(np.float32)


def regions(shape: tuple[int, int]) -> dict[str, list[Region]]:
    h, w = shape
    hy, hx = h // 2, w // 2
    return {
        "train": [(0, 0, hy, hx), (hy, hx, h, w)],
        "test": [(0, hx, hy, w), (hy, 0, h, hx)],
    }


def _crop(photo: np.ndarray, region: Region, crop: int, rng: np.random.Generator) -> np.ndarray:
    y0, x0, y1, x1 = region
    y = int(rng.integers(y0, y1 - crop + 1))
    x = int(rng.integers(x0, x1 - crop + 1))
    patch = photo[y : y + crop, x : x + crop]
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    if rng.uniform() < 0.5:
        patch = patch[::-1, :]
    return np.ascontiguousarray(patch)


# Defects: each takes (crop HxW, rng, foreign crop HxW) and returns (changed crop, bool mask).
def _place(rng: np.random.Generator, size: tuple[int, int], frac: tuple[float, float]) -> tuple[float, float, float]:
    r = max(2.5, rng.uniform(*frac) * min(size))
    cy, cx = sh.inside(rng, size, r + 2)
    return cy, cx, r


def scratch(img, rng, _foreign):
    size, u = img.shape, rng.uniform()
    pts = sh.wander(
        rng,
        np.array(sh.inside(rng, size, 0.15 * min(size))),
        rng.uniform(-np.pi, np.pi),
        (0.2 + 0.4 * u) * min(size),
        bend=0.06,
    )
    alpha = sh.line(size, pts, rng.uniform(1.0, 1.0 + 2 * u))
    contrast = (0.15 + 0.25 * u) * rng.choice([-1, 1])
    return img + contrast * alpha, alpha > 0.25


def foreign(img, rng, other):
    cy, cx, r = _place(rng, img.shape, (0.06, 0.2))
    alpha = ndimage.gaussian_filter(sh.blob(rng, img.shape, cy, cx, r, 0.5), 1.0)
    patch = other
    if rng.uniform() < 0.5:  # same brightness: only the texture gives it away
        patch = other - other.mean() + img.mean()
    return img * (1 - alpha) + patch * alpha, alpha > 0.25


def hole(img, rng, _foreign):
    cy, cx, r = _place(rng, img.shape, (0.03, 0.14))
    alpha = ndimage.gaussian_filter(sh.blob(rng, img.shape, cy, cx, r, 0.5), 1.0)
    dark = rng.uniform(0.03, 0.2)
    return img * (1 - alpha) + (dark + 0.02 * sh.noise(rng, img.shape, 0.8)) * alpha, alpha > 0.25


def blur(img, rng, _foreign):
    cy, cx, r = _place(rng, img.shape, (0.08, 0.2))
    alpha = ndimage.gaussian_filter(sh.blob(rng, img.shape, cy, cx, r, 0.4), 2.0)
    blurred = ndimage.gaussian_filter(img, rng.uniform(1.5, 3.5))
    return img * (1 - alpha) + blurred * alpha, alpha > 0.25


def intensity(img, rng, _foreign):
    cy, cx, r = _place(rng, img.shape, (0.07, 0.18))
    alpha = ndimage.gaussian_filter(sh.blob(rng, img.shape, cy, cx, r, 0.5, rng.uniform(1, 1.6)), 2.0)
    if rng.uniform() < 0.5:  # a discoloured patch
        changed = img + rng.uniform(0.08, 0.25) * rng.choice([-1, 1])
    else:  # a patch with washed-out or exaggerated contrast
        changed = img.mean() + (img - img.mean()) * rng.choice([rng.uniform(0.2, 0.5), rng.uniform(1.6, 2.2)])
    return img * (1 - alpha) + changed * alpha, alpha > 0.25


DEFECTS: dict[str, Callable] = {
    "scratch": scratch,
    "foreign": foreign,
    "hole": hole,
    "blur": blur,
    "intensity": intensity,
}
VISIBLE = 0.015  # mean absolute change inside the mask


def inject(defect: str, img: np.ndarray, rng: np.random.Generator, other: np.ndarray):
    """Apply a defect, changing pixels only inside its mask. A draw that barely changes the photo
    (a blur over a flat brick face) would be a label without a defect: draw again elsewhere."""
    for _ in range(20):
        changed, mask = DEFECTS[defect](img, rng, other)
        changed = np.where(mask, np.clip(changed, 0, 1), img)
        if mask.any() and np.abs(changed - img)[mask].mean() >= VISIBLE:
            break
    if not mask.any():
        raise AssertionError(f"{defect} drew an empty mask")
    return changed.astype(np.float32), mask


def build_texture_benchmark(
    name: str,
    root: str | Path,
    n_train: int = 200,
    n_test_good: int = 40,
    n_test_defect: int = 60,
    crop: int = 128,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``root/<name>`` (MVTec AD layout, grayscale crops of ``crop`` px) and return that path.

    Defective test images cycle through ``DEFECTS``; a defect is kept inside its mask exactly.
    """
    photo = load_photo(name)
    half = min(photo.shape) // 2
    if not 32 <= crop <= half:
        raise ValueError(f"crop must be between 32 and {half} px for a {photo.shape[0]}x{photo.shape[1]} photo")
    if n_train < 1 or n_test_good < 0 or n_test_defect < 0:
        raise ValueError("need n_train >= 1 and non-negative test counts")
    rng = np.random.default_rng(np.random.SeedSequence([seed, sum(map(ord, name))]))
    parts = regions((photo.shape[0], photo.shape[1]))  # load_photo gives H x W
    others = [load_photo(t) for t in TEXTURES if t != name]
    types = list(DEFECTS)
    tick = progress or (lambda _n: None)
    manifest = {
        "generator": "diffqc.data.textures",
        "texture": name,
        "crop": crop,
        "seed": seed,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "defect_types": types,
        "train_regions": parts["train"],
        "test_regions": parts["test"],
        "source": f"skimage.data.{name}()",
    }

    def pick(split: str) -> np.ndarray:
        region = parts[split][int(rng.integers(len(parts[split])))]
        return _crop(photo, region, crop, rng)

    with building(Path(root) / name, manifest) as out:
        for i in range(n_train):
            write_sample(out, "train", "good", f"{i:03d}", pick("train"))
            tick(1)
        for i in range(n_test_good):
            write_sample(out, "test", "good", f"{i:03d}", pick("test"))
            tick(1)
        for i in range(n_test_defect):
            defect = types[i % len(types)]
            img = pick("test")
            other = others[int(rng.integers(len(others)))]
            foreign_patch = _crop(other, (0, 0, other.shape[0], other.shape[1]), crop, rng)
            changed, mask = inject(defect, img, rng, foreign_patch)
            write_sample(out, "test", defect, f"{i // len(types):03d}", changed, mask)
            tick(1)
    return Path(root) / name
