"""gRPC ``Detect`` for the synchronous high-priority path and the Kafka worker for the stream.

Both call the same ``infer_prepared``; Triton's dynamic batcher sees the tiles of every frame in
flight, from both paths, and batches them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from confluent_kafka import Message

from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import INFERENCE_RESULTS, PREPARED_FRAMES
from diffqc.runtime.logging import frame_context
from diffqc.serving.client import InferenceRejected, InferenceUnavailable, TritonDetector
from diffqc.serving.prepared import PreparedFrameError, infer_prepared
from diffqc.settings import Settings
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.v1 import inference_pb2, inference_pb2_grpc
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame

log = logging.getLogger(__name__)
GROUP = "inference"


class Inference:
    """What both paths share: Triton, the blob store, the pool that keeps tiles in flight."""

    def __init__(self, settings: Settings, detector: TritonDetector, blobs: BlobStore):
        self.settings, self.detector, self.blobs = settings, detector, blobs
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="triton")

    def infer(self, prepared: PreparedFrame) -> InferenceResult:
        return infer_prepared(prepared, self.detector, self.blobs, self.pool)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference):
        self.inference = inference

    def Detect(self, request: inference_pb2.DetectRequest, context: grpc.ServicerContext):
        with frame_context(request.prepared.frame.frame_id):
            try:
                return inference_pb2.DetectResponse(result=self.inference.infer(request.prepared))
            except (InferenceRejected, PreparedFrameError) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except BlobNotFound as exc:
                context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            except InferenceUnavailable as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def stream_worker(inference: Inference) -> ConsumeLoop:
    """qc.frames.prepared.v1 -> Triton -> qc.inference.v1 (key = line), committed after delivery."""
    kafka = inference.settings.kafka
    publisher = Publisher(kafka)

    def handle(prepared: PreparedFrame, _msg: Message) -> None:
        try:
            result = inference.infer(prepared)
        except (InferenceRejected, PreparedFrameError, BlobNotFound) as exc:
            raise PoisonMessage(str(exc)) from exc
        publisher.publish(INFERENCE_RESULTS, prepared.frame.line_id.encode(), result.SerializeToString(),
                          [("frame_id", prepared.frame.frame_id.encode())])

    return ConsumeLoop(kafka, PREPARED_FRAMES, GROUP, PreparedFrame.FromString, handle)
