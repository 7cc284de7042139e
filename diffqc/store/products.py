"""Product types: the preprocessing spec and the nominal process ranges of each kind of part.

A product type must be registered before its frames are ingested (ingestion rejects a frame of an
unknown product type, naming it). The row carries two JSON documents:

``preprocessing`` — how preprocessing normalizes a frame (validated by
``diffqc.preprocess.spec.PreprocessSpec``, the reader of the spec)::

    {"height": 256, "width": 256,   # required: normalized size (resize keeping the aspect ratio, then pad)
     "channels": 3,                 # required: 1 (grayscale) or 3 (RGB), what the model was trained on
     "tile": 512, "overlap": 64,    # optional: images larger than tile are cut into overlapping tiles
     "align": {"reference": "<blob uri>", "max_shift": 8, "upsample": 10}}   # optional alignment

``align`` is optional: absent/false means no alignment; a plain string is the reference image URI.

``nominal_ranges`` — the process window of each process parameter, ``{"oven_temp_c": [230.0, 250.0]}``
(``[lo, hi]`` with lo < hi, finite); scoring measures a frame's process deviation against it.

The name, both documents' rules and the error messages are pydantic's, rendered by
``diffqc.core.validation`` (``product type 'pcb': nominal_ranges: oven_temp_c: must satisfy lo < hi ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints, TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.core.validation import validate
from diffqc.store.dialect import dialect_insert
from diffqc.store.models import ProductType

MAX_NAME_LENGTH = 64  # product_types.name is VARCHAR(64)


class ProductSpecError(ValueError):
    """A product type's name, preprocessing spec or nominal ranges are malformed; ``str()`` says which and why."""


def register_product(
    session: Session, name: str, preprocessing: Mapping[str, Any], nominal_ranges: Mapping[str, Any] | None = None
) -> ProductType:
    """Create product type ``name`` or replace its spec and ranges (upsert); return the stored row.

    Both documents are validated first (ProductSpecError names the problem), so a product that is
    registered can always be preprocessed and scored. Safe against a concurrent registration of the
    same name (``INSERT ... ON CONFLICT DO UPDATE``). The caller commits.
    """
    name = _check_name(name)
    spec = _check_preprocessing(name, preprocessing)
    ranges = _check_ranges(name, nominal_ranges or {})
    insert = dialect_insert(session, ProductType).values(name=name, preprocessing=spec, nominal_ranges=ranges)
    session.execute(
        insert.on_conflict_do_update(index_elements=["name"], set_={"preprocessing": spec, "nominal_ranges": ranges})
    )
    row = session.get(ProductType, name, populate_existing=True)
    if row is None:  # the upsert above wrote it in this transaction
        raise RuntimeError(f"product type {name!r} is missing right after it was registered")
    return row


def find_product_type(session: Session, name: str) -> ProductType | None:
    """The product type called ``name``, or None when it is not registered."""
    return session.get(ProductType, name)


def list_products(session: Session) -> list[ProductType]:
    """Every registered product type, by name."""
    return list(session.scalars(select(ProductType).order_by(ProductType.name)))


def _printable(name: str) -> str:
    if not name.strip():
        raise ValueError(f"must not be blank, got {name!r}")
    if any(ord(ch) < 32 for ch in name):
        raise ValueError(f"must be printable characters (no control characters), got {name!r}")
    return name


def _bounds(bounds: Any) -> Any:
    if isinstance(bounds, Mapping):  # {"min": lo, "max": hi} is accepted, as scoring reads it
        bounds = [bounds.get("min"), bounds.get("max")]
    if (
        not isinstance(bounds, list | tuple)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds)
    ):
        raise ValueError(f"must be [lo, hi] (two numbers), got {bounds!r}")
    return bounds


def _ordered(bounds: list[float]) -> list[float]:
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"must satisfy lo < hi with finite bounds, got {bounds!r}")
    return bounds


def _parameter_name(name: str) -> str:
    if not name.strip():
        raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
    return name


# A product type's name: at most VARCHAR(64), not blank, no control characters (stored as given).
ProductTypeName = Annotated[str, StringConstraints(strict=True, max_length=MAX_NAME_LENGTH), AfterValidator(_printable)]
# The process window of one parameter: [lo, hi] (or {"min": lo, "max": hi}), finite, lo < hi.
NominalRange = Annotated[list[float], BeforeValidator(_bounds), AfterValidator(_ordered)]
NominalRanges = dict[Annotated[str, AfterValidator(_parameter_name)], NominalRange]

_NAME = TypeAdapter(ProductTypeName)
_RANGES = TypeAdapter(NominalRanges)


def _check_name(name: Any) -> str:
    return validate(_NAME, name, "product type name", ProductSpecError)


def _check_preprocessing(name: str, preprocessing: Any) -> dict:
    # Imported here: the spec's reader lives with preprocessing (whose package pulls in scipy and
    # scikit-image), and only registration needs it, not every process that reads products.
    from diffqc.preprocess.spec import PreprocessSpec, SpecError

    spec = dict(preprocessing) if isinstance(preprocessing, Mapping) else preprocessing
    try:
        PreprocessSpec.from_dict(spec, name)
    except SpecError as exc:
        raise ProductSpecError(str(exc)) from None
    return spec  # stored as written (a plain reference string stays a string)


def _check_ranges(name: str, ranges: Any) -> dict[str, list[float]]:
    return validate(_RANGES, ranges, f"product type {name!r}: nominal_ranges", ProductSpecError)
