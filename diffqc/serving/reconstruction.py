"""What a good part would look like here: the model's reconstruction of one inspected frame, on demand.

The pipeline keeps no reconstructions (one per frame would double what the blob store holds, for
pictures almost nobody opens); the review page asks for one when an inspector wants it. The frame's
stored image is prepared as preprocessing prepared it (the product's spec and alignment reference),
every tile goes to the model version that judged the inspection with the RECONSTRUCTION output
requested, the tiles are stitched with the anomaly map's weights and the letterbox padding is cropped:
the picture lines up pixel for pixel with the heatmap overlay (``diffqc.scoring.regions.heatmap_png``).

Errors say what is missing: ``BlobNotFound`` (the image was pruned), ``FrameImageError``,
``UnknownProduct``/``SpecError``, ``InferenceRejected`` (e.g. the version is no longer served),
``InferenceUnavailable`` (Triton down).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from diffqc.core.tiles import stitch
from diffqc.preprocess.normalize import decode_image, normalize
from diffqc.preprocess.prepare import Preprocessor, cut_tiles
from diffqc.serving.client import TritonDetector


def reconstruct_frame(
    image: np.ndarray,
    product: str,
    version: str,
    preprocessor: Preprocessor,
    detector: TritonDetector,
    pool: ThreadPoolExecutor,
) -> np.ndarray:
    """The reconstruction (h, w, C) in [0, 1] of an original HxWxC ``image`` of ``product`` by ``version``,
    in the normalized geometry with the padding cropped (the heatmap's pixels)."""
    spec = preprocessor.spec(product)
    normalized, box, _alignment = normalize(image, spec, preprocessor.reference(spec))
    tiles = cut_tiles(normalized, spec)
    futures = [pool.submit(detector.detect, tensor[None], product, version, True) for _, tensor in tiles]
    outputs = [np.asarray(future.result().reconstruction)[0] for future in futures]
    overlap = spec.overlap if spec.tile else 0
    full = stitch([window for window, _ in tiles], outputs, (spec.height, spec.width), overlap)
    return np.clip(full.transpose(1, 2, 0)[box.content], 0.0, 1.0)


def reconstruction_png(
    image_bytes: bytes,
    image_name: str,
    product: str,
    version: str,
    preprocessor: Preprocessor,
    detector: TritonDetector,
    pool: ThreadPoolExecutor,
) -> bytes:
    """PNG of ``reconstruct_frame`` for a stored frame image (decoded within the preprocessor's limits)."""
    image = decode_image(image_bytes, image_name, preprocessor.limits)
    rgb = reconstruct_frame(image, product, version, preprocessor, detector, pool)
    pixels = np.round(rgb * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()
