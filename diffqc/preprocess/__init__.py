"""Preprocessing: a frame's image, normalized to its product's spec and cut into detector tiles.

    spec = PreprocessSpec.from_dict(product_row.preprocessing, product)
    prepared = prepare_frame(frame, spec, blobs)          # a diffqc.v1 PreparedFrame

Steps: decode (``diffqc.data.images`` semantics) -> colour (to the model's channels) -> resize to
fit the spec's size keeping the aspect ratio, centred, edge-padded (``Letterbox``) -> optional
phase-correlation alignment to a reference -> overlapping tiles (``diffqc.core.tiles``), each a
float32 CHW tensor in [0, 1] in the blob store.
"""

from diffqc.preprocess.geometry import Letterbox
from diffqc.preprocess.normalize import FrameImageError, decode_image, normalize, to_channels
from diffqc.preprocess.prepare import Preprocessor, UnknownProduct, load_frame_image, prepare_frame, product_spec
from diffqc.preprocess.spec import AlignSpec, PreprocessSpec, SpecError

__all__ = [
    "AlignSpec",
    "FrameImageError",
    "Letterbox",
    "PreprocessSpec",
    "Preprocessor",
    "SpecError",
    "UnknownProduct",
    "decode_image",
    "load_frame_image",
    "normalize",
    "prepare_frame",
    "product_spec",
    "to_channels",
]
