"""A contact sheet of data sets in the MVTec AD layout, so people can see the data.

One row per data set: a few good images, then one example of each defect type with its
mask drawn as a red ring just outside the defect (the defect itself stays visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from diffqc.data.images import read_image, read_mask
from diffqc.data.mvtec import Sample, list_samples

_RED = np.array([255, 40, 40], dtype=np.uint8)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(sample: Sample, tile: int) -> Image.Image:
    img = read_image(sample.path)
    rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    pic = Image.fromarray(np.round(rgb * 255).astype(np.uint8)).resize((tile, tile), Image.Resampling.BILINEAR)
    if sample.mask_path is None:
        return pic
    mask_pic = Image.fromarray(read_mask(sample.mask_path).astype(np.uint8) * 255).resize((tile, tile))
    mask = np.asarray(mask_pic) > 127
    ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
    arr = np.array(pic)
    arr[ring] = _RED
    return Image.fromarray(arr)


def _pick(root: Path, n_good: int) -> list[Sample]:
    samples = list_samples(root, "test")
    good = [s for s in samples if s.label == 0][:n_good]
    if len(good) < n_good:
        good += list_samples(root, "train")[: n_good - len(good)]
    first_of_type: dict[str, Sample] = {}
    for s in samples:
        if s.label == 1:
            first_of_type.setdefault(s.defect_type, s)
    return good + list(first_of_type.values())


def contact_sheet(datasets: Sequence[str | Path], out: str | Path, n_good: int = 2, tile: int = 160) -> Path:
    """Write a PNG grid of ``datasets`` (each an MVTec AD folder) to ``out`` and return its path."""
    rows = [(Path(d).name, _pick(Path(d), n_good)) for d in datasets]
    if not rows:
        raise ValueError("no data sets to preview")
    gap, caption, label_w = 6, 18, 130
    cols = max(len(samples) for _, samples in rows)
    width = label_w + cols * (tile + gap) + gap
    height = len(rows) * (tile + caption + gap) + gap
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for r, (name, samples) in enumerate(rows):
        y = gap + r * (tile + caption + gap)
        draw.text((gap, y + tile // 2 - 8), name, fill=(20, 20, 20), font=font)
        for c, sample in enumerate(samples):
            x = label_w + c * (tile + gap)
            sheet.paste(_tile(sample, tile), (x, y))
            text = "good" if sample.label == 0 else sample.defect_type
            draw.text((x + 2, y + tile + 2), text, fill=(180, 0, 0) if sample.label else (20, 20, 20), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
