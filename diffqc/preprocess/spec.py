"""A product type's preprocessing spec, as stored in ``product_types.preprocessing``.

    {"height": 256, "width": 256,   # normalized size: the frame is resized to fit, aspect kept, then padded
     "channels": 3,                 # 1 (grayscale) or 3 (RGB): what the product's model was trained on
     "tile": 512, "overlap": 64,    # optional: normalized images larger than tile are cut into tiles
     "align": {"reference": "<blob uri>", "max_shift": 8, "upsample": 10}}   # optional, see below

``align`` (optional): register each normalized frame to a reference image of the product (a
normalized good image in the blob store: .npy HxW[xC] in [0, 1], or an image file) by a
phase-correlation translation. A plain string is taken as the reference URI; false/null/absent
means no alignment.

The spec is a pydantic model (extra keys are refused); ``PreprocessSpec.from_dict`` raises
``SpecError`` with every problem on one line, each named by its key, in the shape of
``diffqc.core.validation`` (``product type 'pcb': preprocessing spec: channels: must be 1 ...``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from diffqc.core.validation import validate


class SpecError(ValueError):
    """The product's preprocessing spec is missing or malformed; ``str()`` says which key and why."""


def _whole_number(value: Any) -> Any:
    # An int, or a float with an integral value (pydantic refuses a fractional one); never a bool
    # or a string, which a spec written by hand should not pass for a size.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def _whole_number_or_unset(value: Any) -> Any:
    return 0 if value in (None, False, "", 0) else _whole_number(value)  # unset: 0


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of pixels, got {value!r}")
    return value


Size = Annotated[int, BeforeValidator(_whole_number), Field(ge=1)]
OptionalSize = Annotated[int, BeforeValidator(_whole_number_or_unset), Field(ge=0)]


class AlignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: Annotated[str, StringConstraints(min_length=1)]  # blob URI of the normalized reference image
    # larger estimated shifts are not applied (None: 10% of the shorter side)
    max_shift: Annotated[float, BeforeValidator(_number), Field(ge=0)] | None = None
    # sub-pixel precision: 1/upsample pixel
    upsample: Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=100)] = 10


class PreprocessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    height: Size
    width: Size
    channels: Size
    tile: OptionalSize = 0  # 0: never tile
    overlap: OptionalSize = 0
    align: AlignSpec | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None, product: str) -> PreprocessSpec:
        return validate(cls, spec, f"product type {product!r}: preprocessing spec", SpecError)

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, spec: Any) -> Any:
        if isinstance(spec, BaseModel):
            return spec
        if not spec:
            raise ValueError("empty; it needs at least height, width and channels")
        if not isinstance(spec, dict):
            raise ValueError(f"must be a mapping, got {type(spec).__name__}")
        return spec

    @field_validator("channels")
    @classmethod
    def _gray_or_rgb(cls, channels: int) -> int:
        if channels not in (1, 3):
            raise ValueError(f"must be 1 (grayscale) or 3 (RGB), got {channels}")
        return channels

    @field_validator("align", mode="before")
    @classmethod
    def _align_shorthand(cls, value: Any) -> Any:
        if value in (None, False, "", {}):
            return None
        if isinstance(value, str):
            return {"reference": value}
        if value is True:
            raise ValueError("needs a reference image: align: {reference: <blob uri>}")
        if not isinstance(value, dict | AlignSpec):
            raise ValueError(f"must be a reference URI or {{reference, max_shift, upsample}}; got {value!r}")
        return value

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> PreprocessSpec:
        if self.tile and self.overlap >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than tile ({self.tile})")
        return self
