"""A product type's preprocessing spec, as stored in ``product_types.preprocessing``.

    {"height": 256, "width": 256,   # normalized size: the frame is resized to fit, aspect kept, then padded
     "channels": 3,                 # 1 (grayscale) or 3 (RGB): what the product's model was trained on
     "tile": 512, "overlap": 64,    # optional: normalized images larger than tile are cut into tiles
     "align": {"reference": "<blob uri>", "max_shift": 8, "upsample": 10}}   # optional, see below

``align`` (optional): register each normalized frame to a reference image of the product (a
normalized good image in the blob store: .npy HxW[xC] in [0, 1], or an image file) by a
phase-correlation translation. A plain string is taken as the reference URI; false/null/absent
means no alignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SpecError(ValueError):
    """The product's preprocessing spec is missing or malformed; ``str()`` says which key and why."""


@dataclass(frozen=True)
class AlignSpec:
    reference: str  # blob URI of the normalized reference image
    max_shift: float | None = None  # larger estimated shifts are not applied (None: 10% of the shorter side)
    upsample: int = 10  # sub-pixel precision: 1/upsample pixel


@dataclass(frozen=True)
class PreprocessSpec:
    height: int
    width: int
    channels: int
    tile: int = 0  # 0: never tile
    overlap: int = 0
    align: AlignSpec | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None, product: str) -> PreprocessSpec:
        where = f"product type {product!r}: preprocessing spec"
        if not spec:
            raise SpecError(f"{where} is empty; it needs at least height, width and channels")
        if not isinstance(spec, dict):
            raise SpecError(f"{where} must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"height", "width", "channels", "tile", "overlap", "align"}
        if unknown:
            raise SpecError(f"{where} has unknown key(s) {sorted(unknown)}")
        missing = [k for k in ("height", "width", "channels") if spec.get(k) in (None, "")]
        if missing:
            raise SpecError(f"{where} lacks {', '.join(missing)}")
        height, width = _int(spec, "height", where, 1), _int(spec, "width", where, 1)
        channels = _int(spec, "channels", where, 1)
        if channels not in (1, 3):
            raise SpecError(f"{where}: channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        tile = _int(spec, "tile", where, 0) if spec.get("tile") else 0
        overlap = _int(spec, "overlap", where, 0) if spec.get("overlap") else 0
        if tile and overlap >= tile:
            raise SpecError(f"{where}: overlap ({overlap}) must be smaller than tile ({tile})")
        return cls(height, width, channels, tile, overlap, _align(spec.get("align"), where))


def _int(spec: dict, key: str, where: str, minimum: int) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise SpecError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _align(value: Any, where: str) -> AlignSpec | None:
    if value in (None, False, "", {}):
        return None
    if isinstance(value, str):
        return AlignSpec(reference=value)
    if value is True:
        raise SpecError(f"{where}: align needs a reference image: align: {{reference: <blob uri>}}")
    if not isinstance(value, dict) or not value.get("reference"):
        raise SpecError(f"{where}: align must be a reference URI or {{reference, max_shift, upsample}}; got {value!r}")
    unknown = set(value) - {"reference", "max_shift", "upsample"}
    if unknown:
        raise SpecError(f"{where}: align has unknown key(s) {sorted(unknown)}")
    max_shift = value.get("max_shift")
    if max_shift is not None and (not isinstance(max_shift, int | float) or max_shift < 0):
        raise SpecError(f"{where}: align.max_shift must be a number of pixels >= 0, got {max_shift!r}")
    upsample = value.get("upsample", 10)
    if not isinstance(upsample, int) or isinstance(upsample, bool) or not 1 <= upsample <= 100:
        raise SpecError(f"{where}: align.upsample must be an integer in [1, 100], got {upsample!r}")
    return AlignSpec(str(value["reference"]), None if max_shift is None else float(max_shift), upsample)
