"""Inference on a prepared frame: every tile to Triton at once, maps stitched, scores aggregated.

All tiles of a frame are sent concurrently, so Triton's dynamic batcher can batch them (and the
tiles of other frames in flight). Tile maps are blended with the detector's own raised-cosine
weights, so stitched maps have no seams; a frame's component scores and score are the maximum
over its tiles, since a defect anywhere makes the part defective. Versions under trial score the
same tiles beside the judging one (their maps are not kept); one that fails is left out of the
result and counted, never failing the frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from google.protobuf.duration_pb2 import Duration

from diffqc.core.components import COMPONENTS
from diffqc.core.tiles import stitch
from diffqc.runtime.metrics import TRIAL_SCORE_FAILURES
from diffqc.serving.client import Detection, InferenceRejected, InferenceUnavailable, TritonDetector
from diffqc.store.blobs import BlobStore, get_array, put_array
from diffqc.v1.common_pb2 import ModelRef
from diffqc.v1.inference_pb2 import InferenceResult, TrialScore
from diffqc.v1.preprocessing_pb2 import PreparedFrame, Tile

log = logging.getLogger(__name__)


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
    windows = [(tile.y, tile.x, tile.height, tile.width) for tile in prepared.tiles]
    maps = [det.anomaly_map[0] for det in detections]
    return stitch(windows, maps, (shape.height, shape.width), prepared.tile_overlap)[0]


def _trial_score(version: str, detections: list[Future[Detection]]) -> TrialScore | None:
    try:
        done = [d.result() for d in detections]
    except (InferenceRejected, InferenceUnavailable) as exc:
        TRIAL_SCORE_FAILURES.labels(version=version).inc()
        log.warning("model version %r under trial did not score the frame: %s", version, exc)
        return None
    components = np.max([d.component_scores[0] for d in done], axis=0)
    return TrialScore(
        model=ModelRef(version=done[0].model_version),
        score=max(float(d.score[0]) for d in done),
        component_scores={name: float(v) for name, v in zip(COMPONENTS, components, strict=True)},
    )


def infer_prepared(
    prepared: PreparedFrame,
    detector: TritonDetector,
    blobs: BlobStore,
    pool: ThreadPoolExecutor,
    version: str | None = None,
    beside: Sequence[str] = (),
    canary: bool = False,
) -> InferenceResult:
    """Every tile through ``version`` of the model (the judging version; None: Triton's newest), and through
    each version in ``beside`` (under trial) for its score; ``canary``: ``version`` is a canary candidate."""
    started = time.perf_counter()
    if not prepared.tiles:
        raise PreparedFrameError(f"prepared frame {prepared.frame.frame_id!r} has no tiles")
    tiles = [_load_tile(blobs, tile) for tile in prepared.tiles]
    product = prepared.frame.product_type

    def submit(model: str | None) -> list[Future[Detection]]:
        return [pool.submit(detector.detect, tile[None], product, model) for tile in tiles]

    trials = {other: submit(other) for other in beside}
    detections = [d.result() for d in submit(version)]
    if len({d.model_version for d in detections}) > 1:  # a new version took over mid-frame: one model per frame
        detections = [d.result() for d in submit(version)]
    anomaly_map = _stitch(prepared, detections) if len(tiles) > 1 else detections[0].anomaly_map[0, 0]
    components = np.max([d.component_scores[0] for d in detections], axis=0)
    trial_scores = [s for other, futures in trials.items() if (s := _trial_score(other, futures)) is not None]
    name = detector.settings.model_name
    for trial in trial_scores:
        trial.model.name = name
    latency = Duration()
    latency.FromNanoseconds(int((time.perf_counter() - started) * 1e9))
    return InferenceResult(
        frame=prepared.frame,
        component_scores={name: float(v) for name, v in zip(COMPONENTS, components, strict=True)},
        score=max(float(d.score[0]) for d in detections),
        anomaly_map=put_array(blobs, anomaly_map),
        model=ModelRef(name=name, version=detections[0].model_version),
        latency=latency,
        trial_scores=trial_scores,
        canary=canary,
    )
