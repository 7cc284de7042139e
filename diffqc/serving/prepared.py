"""Inference on a prepared frame: every tile to Triton at once, maps stitched, scores aggregated.

All tiles of a frame are sent concurrently, so Triton's dynamic batcher can batch them (and the
tiles of other frames in flight). Tile maps are blended with the detector's own raised-cosine
weights, so stitched maps have no seams; a frame's component scores and score are the maximum
over its tiles, since a defect anywhere makes the part defective.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from google.protobuf.duration_pb2 import Duration

from diffqc.core.components import COMPONENTS
from diffqc.core.tiles import window_weight
from diffqc.serving.client import Detection, TritonDetector
from diffqc.store.blobs import BlobStore, get_array, put_array
from diffqc.v1.common_pb2 import ModelRef
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame, Tile


class PreparedFrameError(ValueError):
    """A prepared frame that cannot be inferred (no tiles, a tile tensor of the wrong shape)."""


def _load_tile(blobs: BlobStore, tile: Tile) -> np.ndarray:
    tensor = get_array(blobs, tile.tensor)
    if tensor.ndim != 3 or tensor.shape[1:] != (tile.height, tile.width):
        raise PreparedFrameError(
            f"tile {tile.index}: tensor of shape {tensor.shape} does not match its {tile.height}x{tile.width} window"
        )
    return tensor.astype(np.float32, copy=False)


def _stitch(prepared: PreparedFrame, detections: list[Detection]) -> np.ndarray:
    shape = prepared.normalized_shape
    full = (shape.height, shape.width)
    total = np.zeros(full, dtype=np.float32)
    weight = np.zeros(full, dtype=np.float32)
    for tile, det in zip(prepared.tiles, detections, strict=True):
        win = (tile.y, tile.x, tile.height, tile.width)
        w = window_weight(win, full, prepared.tile_overlap)
        area = (slice(tile.y, tile.y + tile.height), slice(tile.x, tile.x + tile.width))
        total[area] += w * det.anomaly_map[0, 0].astype(np.float32, copy=False)
        weight[area] += w
    return total / np.maximum(weight, np.float32(1e-12))


def infer_prepared(
    prepared: PreparedFrame,
    detector: TritonDetector,
    blobs: BlobStore,
    pool: ThreadPoolExecutor,
    version: str | None = None,
) -> InferenceResult:
    """Every tile through ``version`` of the model (the product's production version; None: Triton's newest)."""
    started = time.perf_counter()
    if not prepared.tiles:
        raise PreparedFrameError(f"prepared frame {prepared.frame.frame_id!r} has no tiles")
    tiles = [_load_tile(blobs, tile) for tile in prepared.tiles]
    product = prepared.frame.product_type

    def detect_all() -> list[Detection]:
        return list(pool.map(lambda t: detector.detect(t[None], product, version), tiles))

    detections = detect_all()
    if len({d.model_version for d in detections}) > 1:  # a new version took over mid-frame: one model per frame
        detections = detect_all()
    anomaly_map = _stitch(prepared, detections) if len(tiles) > 1 else detections[0].anomaly_map[0, 0]
    components = np.max([d.component_scores[0] for d in detections], axis=0)
    latency = Duration()
    latency.FromNanoseconds(int((time.perf_counter() - started) * 1e9))
    return InferenceResult(
        frame=prepared.frame,
        component_scores={name: float(v) for name, v in zip(COMPONENTS, components, strict=True)},
        score=max(float(d.score[0]) for d in detections),
        anomaly_map=put_array(blobs, anomaly_map),
        model=ModelRef(name=detector.settings.model_name, version=detections[0].model_version),
        latency=latency,
    )
