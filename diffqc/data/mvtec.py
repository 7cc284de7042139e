"""The MVTec AD folder layout, which anomaly-detection tools share.

<root>/train/good/*.png
<root>/test/good/*.png
<root>/test/<defect>/*.png
<root>/ground_truth/<defect>/<name>_mask.png   (optional: image-level data sets have none)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from diffqc.core.files import atomic_directory
from diffqc.data.images import ImageReadError, read_mask, write_image, write_mask

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
GOOD = "good"
Split = Literal["train", "test"]


class DatasetError(ValueError):
    """A data set folder is missing, empty or malformed; the message names the folder."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 good, 1 defective
    defect_type: str
    mask_path: Path | None


def _natural_key(path: Path) -> list[object]:
    # "img2" sorts before "img10", so listings match what people see in a file browser.
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return sorted(files, key=_natural_key)


def _require_dir(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise DatasetError(f"{what} folder {folder} is missing (expected the MVTec AD layout)")


def mask_path_for(root: str | Path, defect_type: str, image_path: Path) -> Path:
    """Where MVTec AD keeps the mask of one test image."""
    return Path(root) / "ground_truth" / defect_type / f"{image_path.stem}_mask.png"


def list_samples(root: str | Path, split: Split) -> list[Sample]:
    """All samples of one split, sorted: ``good`` first, then defect types alphabetically,
    then file names in natural order. Masks are attached where ``ground_truth`` has them."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _require_dir(root, "data set")
    split_dir = root / split
    _require_dir(split_dir, f"{split!r} split")
    if split == "train":
        # Training uses good parts only; other folders under train/ are not part of the layout.
        good = split_dir / GOOD
        _require_dir(good, "training")
        return [Sample(p, 0, GOOD, None) for p in _images_in(good)]

    classes = sorted(
        (d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: (d.name != GOOD, d.name),
    )
    if not classes:
        raise DatasetError(f"test folder {split_dir} has no class folders (expected good/ and <defect>/)")
    samples = []
    for folder in classes:
        label = 0 if folder.name == GOOD else 1
        for path in _images_in(folder):
            mask = mask_path_for(root, folder.name, path) if label else None
            samples.append(Sample(path, label, folder.name, mask if mask is not None and mask.is_file() else None))
    return samples


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"sample name must be a plain file name, got {name!r}")
    return name if Path(name).suffix.lower() in IMAGE_SUFFIXES else f"{name}.png"


def write_sample(
    root: str | Path,
    split: Split,
    defect_type: str,
    name: str,
    image: np.ndarray,
    mask: np.ndarray | None = None,
) -> Sample:
    """Write one image (and its mask for a defective test image) where the layout puts it."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if split == "train" and defect_type != GOOD:
        raise ValueError(f"the train split holds good images only, got defect type {defect_type!r}")
    _check_name(defect_type)
    label = 0 if defect_type == GOOD else 1
    if mask is not None and label == 0:
        raise ValueError(f"good image {name!r} cannot have a defect mask")
    path = root / split / defect_type / _check_name(name)
    if mask is not None and np.asarray(mask).shape[:2] != np.asarray(image).shape[:2]:
        raise ValueError(
            f"mask shape {np.asarray(mask).shape[:2]} differs from image shape {np.asarray(image).shape[:2]}"
        )
    write_image(path, image)
    mask_path = None
    if mask is not None:
        mask_path = write_mask(mask_path_for(root, defect_type, path), mask)
    return Sample(path, label, defect_type, mask_path)


def has_masks(samples: Iterable[Sample]) -> bool:
    """True when there is at least one defective sample and every defective sample has a mask,
    i.e. when pixel-level metrics can be computed."""
    defective = [s for s in samples if s.label == 1]
    return bool(defective) and all(s.mask_path is not None for s in defective)


def sample_mask(sample: Sample) -> np.ndarray | None:
    """The bool HxW mask of a sample: all False for a good image, None for a defective image
    without a mask (image-level data sets)."""
    if sample.mask_path is not None:
        return read_mask(sample.mask_path)
    if sample.label == 1:
        return None
    try:
        with Image.open(sample.path) as im:  # header only: the size, not the pixels
            width, height = im.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(sample.path, f"cannot read the image header ({exc})") from exc
    return np.zeros((height, width), dtype=bool)


MANIFEST = "dataset.json"


def _not_a_dataset(path: Path) -> DatasetError:
    return DatasetError(f"{path} exists and was not built by diffqc; remove it or choose another folder")


@contextmanager
def building(target: str | Path, manifest: dict) -> Iterator[Path]:
    """Build a data set in a temporary sibling folder and move it into place only when complete.

    A crash never leaves a half-written data set, and a rebuild never keeps stale images from
    the previous one. Only folders that diffqc built (they hold ``dataset.json``) are replaced.
    """
    with atomic_directory(Path(target), MANIFEST, _not_a_dataset) as tmp:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
