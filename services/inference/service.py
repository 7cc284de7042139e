"""gRPC ``Detect`` for the synchronous high-priority path and the Kafka stage for the stream.

Both call the same ``infer_prepared``; Triton's dynamic batcher sees the tiles of every frame in
flight, from both paths, and batches them. Each frame is judged by the version the model registry
routes it to (diffqc.serving.production: production, or a canary's candidate), the version its
result names, and scored by the versions under trial beside it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from diffqc.contracts.topics import INFERENCE_RESULTS, PREPARED_FRAMES
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, StreamStage, grpc_errors
from diffqc.serving.client import InferenceRejected, InferenceUnavailable, TritonDetector
from diffqc.serving.prepared import PreparedFrameError, infer_prepared
from diffqc.serving.production import ModelRoutes
from diffqc.settings import Settings
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.v1 import inference_pb2, inference_pb2_grpc
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame

GROUP = "inference"
ERRORS: ErrorTable = {
    InferenceRejected: grpc.StatusCode.INVALID_ARGUMENT,
    PreparedFrameError: grpc.StatusCode.INVALID_ARGUMENT,
    BlobNotFound: grpc.StatusCode.NOT_FOUND,
    InferenceUnavailable: grpc.StatusCode.UNAVAILABLE,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,  # the model registry, before its first answer
}


class Inference:
    """What both paths share: Triton, the blob store, the pool that keeps tiles in flight, and the
    model registry's routes (``routes``; None: always Triton's newest version, nothing under trial)."""

    def __init__(
        self,
        settings: Settings,
        detector: TritonDetector,
        blobs: BlobStore,
        routes: ModelRoutes | None = None,
    ):
        self.settings, self.detector, self.blobs, self.routes = settings, detector, blobs, routes
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="triton")

    def infer(self, prepared: PreparedFrame) -> InferenceResult:
        frame = prepared.frame
        if self.routes is None or not frame.product_type:
            return infer_prepared(prepared, self.detector, self.blobs, self.pool)
        route = self.routes.route(frame.product_type, frame.line_id, frame.frame_id)
        return infer_prepared(prepared, self.detector, self.blobs, self.pool, route.judge, route.beside, route.canary)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference):
        self.inference = inference

    @grpc_errors(ERRORS, frame=lambda request: request.prepared.frame)
    def Detect(
        self, request: inference_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> inference_pb2.DetectResponse:
        return inference_pb2.DetectResponse(result=self.inference.infer(request.prepared))


def stream_stage(inference: Inference) -> StreamStage[PreparedFrame, InferenceResult]:
    """qc.frames.prepared.v1 -> Triton -> qc.inference.v1, committed after delivery."""
    return StreamStage(GROUP, PREPARED_FRAMES, inference.infer, ERRORS, output=INFERENCE_RESULTS)
