"""Procedural product surfaces with exact defect masks, deterministic by seed.

Five products (see ``PRODUCTS``): each has a design fixed by the seed (aligned parts share
it), per-part variation (placement, texture, lighting, noise) and 3-4 defect types with a
range of sizes and contrasts. ``generate_product`` writes one product in the MVTec AD layout.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffqc.data.mvtec import building, write_sample
from diffqc.data.products import electrode, fabric, metal, pcb, plastic
from diffqc.data.products._base import Product

PRODUCTS: dict[str, Product] = {
    p.name: p for p in (metal.PRODUCT, pcb.PRODUCT, fabric.PRODUCT, plastic.PRODUCT, electrode.PRODUCT)
}
SynthSize = int | tuple[int, int]


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # float32 HxWxC in [0, 1]
    mask: np.ndarray | None  # bool HxW, None for a good image
    clean: np.ndarray  # the same part without the defect (equal to image for a good one)


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    # Every image has its own stream keyed by (seed, product, split, index ...): image i is the
    # same whatever the requested counts, and adding a product changes no other product.
    words = [int(seed) & 0xFFFFFFFF] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _size(size: SynthSize) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 64 or w < 64:  # below that, pads, yarns and pinholes shrink under a pixel
        raise ValueError(f"size must be at least 64x64 pixels, got {h}x{w}")
    return int(h), int(w)


def synthetic_product(name: str) -> Product:
    """The generator of synthetic product ``name`` (its design, parts and defects; see ``PRODUCTS``)."""
    try:
        return PRODUCTS[name]
    except KeyError:
        raise ValueError(f"unknown product {name!r}; choose from {', '.join(PRODUCTS)}") from None


def product_design(name: str, size: SynthSize = (256, 256), seed: int = 0):
    """The fixed design of product ``name`` (a PCB's layout, a moulded part's outline) for ``seed``.

    A design is what a product type *is*: a detector trained on one design has never seen
    another, so a part stream that varies (``render_sample``'s ``seed``) keeps its design fixed.
    """
    return synthetic_product(name).design(_rng(seed, name, "design"), _size(size))


def render_sample(
    name: str,
    stream: str,
    index: int,
    defect_type: str | None = None,
    size: SynthSize = (256, 256),
    seed: int = 0,
    design=None,
) -> Rendered:
    """Render one image of ``name``; ``stream`` ("train", "test_good", "test_defect") separates
    the random streams of the splits so test parts are never copies of training parts."""
    product = synthetic_product(name)
    size = _size(size)
    if design is None:
        design = product_design(name, size, seed)
    scene = product.render(design, _rng(seed, name, stream, index), size)
    clean = scene.finish(scene.base)
    if defect_type is None:
        return Rendered(clean, None, clean)
    if defect_type not in product.defects:
        raise ValueError(f"{name} has no defect {defect_type!r}; choose from {', '.join(product.defects)}")
    changed, mask = product.defects[defect_type](scene, _rng(seed, name, stream, index, defect_type))
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise AssertionError(f"{name}/{defect_type} drew an empty mask (index {index}, seed {seed})")
    # The defect may only change pixels inside its mask: that is what makes the mask exact.
    base = np.where(mask[:, :, None], np.clip(changed, 0, 1), scene.base).astype(np.float32)
    return Rendered(scene.finish(base), mask, clean)


def generate_product(
    name: str,
    root: str | Path,
    n_train: int,
    n_test_good: int,
    n_test_defect: int,
    size: SynthSize = (256, 256),
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``root/<name>`` in the MVTec AD layout and return that path.

    Defective test images cycle through the product's defect types, so every type appears
    once ``n_test_defect`` reaches their number. ``progress(1)`` is called after each image.
    """
    product = synthetic_product(name)
    size = _size(size)
    for label, n in (("n_train", n_train), ("n_test_good", n_test_good), ("n_test_defect", n_test_defect)):
        if n < 0:
            raise ValueError(f"{label} must be >= 0, got {n}")
    if n_train == 0:
        raise ValueError("n_train must be at least 1: a detector needs good training images")
    design = product_design(name, size, seed)
    types = list(product.defects)
    manifest = {
        "generator": "diffqc.data.synth",
        "product": name,
        "description": product.description,
        "aligned": product.aligned,
        "channels": product.channels,
        "size": list(size),
        "seed": seed,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "defect_types": types,
    }
    tick = progress or (lambda _n: None)
    with building(Path(root) / name, manifest) as out:
        for i in range(n_train):
            write_sample(
                out, "train", "good", f"{i:03d}", render_sample(name, "train", i, None, size, seed, design).image
            )
            tick(1)
        for i in range(n_test_good):
            write_sample(
                out, "test", "good", f"{i:03d}", render_sample(name, "test_good", i, None, size, seed, design).image
            )
            tick(1)
        for i in range(n_test_defect):
            defect = types[i % len(types)]
            r = render_sample(name, "test_defect", i, defect, size, seed, design)
            write_sample(out, "test", defect, f"{i // len(types):03d}", r.image, r.mask)
            tick(1)
    return Path(root) / name
