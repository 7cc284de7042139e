"""From a Frame to a PreparedFrame: read the image from the blob store, normalize it, tile it.

Each tile's float32 CHW tensor in [0, 1] goes to the blob store (content-addressed: preparing
the same frame twice writes nothing new and yields the same references).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.core.tiles import Window, tile_windows
from diffqc.data.images import DEFAULT_LIMITS, ImageLimits
from diffqc.preprocess.normalize import FrameImageError, decode_image, load_reference, normalize
from diffqc.preprocess.spec import PreprocessSpec, SpecError
from diffqc.store import db
from diffqc.store.blobs import BlobStore, put_array
from diffqc.store.products import find_product_type
from diffqc.v1.common_pb2 import Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.preprocessing_pb2 import PreparedFrame, Tile

log = logging.getLogger(__name__)


class UnknownProduct(SpecError):
    """The frame names a product type that the database does not know."""


def product_spec(session: Session, product: str) -> PreprocessSpec:
    """The preprocessing spec of ``product`` from its ProductType row (UnknownProduct / SpecError)."""
    if not product:
        raise UnknownProduct("the frame has no product_type")
    row = find_product_type(session, product)
    if row is None:
        raise UnknownProduct(f"unknown product type {product!r}: no product_types row")
    return PreprocessSpec.from_dict(row.preprocessing, product)


def load_frame_image(frame: Frame, blobs: BlobStore, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The frame's original image, float32 HxWxC in [0, 1] (BlobNotFound, FrameImageError)."""
    if not frame.image.uri:
        raise FrameImageError(f"frame {frame.frame_id!r} has no image reference")
    image = decode_image(blobs.get(frame.image), frame.image.uri, limits)
    shape = frame.shape
    if shape.height and (shape.height, shape.width) != image.shape[:2]:
        raise FrameImageError(
            f"image {frame.image.uri} is {image.shape[1]}x{image.shape[0]} px but the frame "
            f"says {shape.width}x{shape.height}"
        )
    return image


def prepare_frame(
    frame: Frame,
    spec: PreprocessSpec,
    blobs: BlobStore,
    image: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> PreparedFrame:
    """Normalize ``frame``'s image (or ``image``, already read) to ``spec`` and cut it into tiles.

    ``reference``: the product's alignment reference (HxW grayscale in normalized geometry), used
    when the spec asks for alignment. The returned message carries the frame unchanged, except
    that a missing ``shape`` is filled in from the image (scoring maps regions back with it).
    """
    if image is None:
        image = load_frame_image(frame, blobs)
    if spec.align is not None and reference is None:
        raise SpecError(f"product type {frame.product_type!r}: alignment asked but no reference image given")
    normalized, box, alignment = normalize(image, spec, reference)
    out = PreparedFrame(
        frame=frame,
        scale=box.scale,
        pad_left=box.pad_left,
        pad_top=box.pad_top,
        normalized_shape=Shape(height=spec.height, width=spec.width, channels=spec.channels),
        aligned=bool(alignment and alignment.applied),
        tile_overlap=spec.overlap if spec.tile else 0,
    )
    if not frame.shape.height:
        out.frame.shape.CopyFrom(Shape(height=image.shape[0], width=image.shape[1], channels=image.shape[2]))
    for index, ((y0, x0, h, w), tensor) in enumerate(cut_tiles(normalized, spec)):
        out.tiles.append(Tile(index=index, x=x0, y=y0, width=w, height=h, tensor=put_array(blobs, tensor)))
    return out


def cut_tiles(normalized: np.ndarray, spec: PreprocessSpec) -> list[tuple[Window, np.ndarray]]:
    """The spec's tile windows over a normalized HxWxC image, each with its float32 CHW tensor (one
    window, the whole image, when the spec does not tile)."""
    tile = spec.tile or max(spec.height, spec.width)
    chw = normalized.transpose(2, 0, 1)
    return [
        ((y0, x0, h, w), np.ascontiguousarray(chw[:, y0 : y0 + h, x0 : x0 + w], dtype=np.float32))
        for y0, x0, h, w in tile_windows(spec.height, spec.width, tile, spec.overlap)
    ]


class Preprocessor:
    """Prepares frames with their product's spec from the database; shared by gRPC and the worker.

    Alignment references are content-addressed blobs, so they are cached by URI for good. ``limits``
    bound the frames' images (the header is checked before decoding: a bomb planted past ingestion
    is refused as FrameImageError, not decoded).
    """

    def __init__(
        self, engine: Engine, blobs: BlobStore, reference_cache: int = 16, limits: ImageLimits = DEFAULT_LIMITS
    ):
        self.engine, self.blobs, self.limits = engine, blobs, limits
        self._references: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = reference_cache
        self._lock = threading.Lock()

    def spec(self, product: str) -> PreprocessSpec:
        with db.session(self.engine) as session:
            return product_spec(session, product)

    def reference(self, spec: PreprocessSpec) -> np.ndarray | None:
        if spec.align is None:
            return None
        uri = spec.align.reference
        with self._lock:
            if uri in self._references:
                self._references.move_to_end(uri)
                return self._references[uri]
        ref = load_reference(self.blobs.get(uri), uri, (spec.height, spec.width))
        with self._lock:
            self._references[uri] = ref
            while len(self._references) > self._cache_size:
                self._references.popitem(last=False)
        return ref

    def prepare(self, frame: Frame) -> PreparedFrame:
        """Raises UnknownProduct / SpecError (product configuration), BlobNotFound, FrameImageError (the
        frame) — none of which a retry fixes — or DependencyUnavailable (database down)."""
        spec = self.spec(frame.product_type)
        image = load_frame_image(frame, self.blobs, self.limits)
        return prepare_frame(frame, spec, self.blobs, image=image, reference=self.reference(spec))
