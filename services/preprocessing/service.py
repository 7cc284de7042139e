"""gRPC ``Prepare`` for the synchronous path and the Kafka worker for the stream.

Both call ``Preprocessor.prepare`` (``diffqc.preprocess``): the product's spec from the database,
the image from the blob store, the tile tensors back to the blob store.
"""

from __future__ import annotations

import logging

import grpc
from confluent_kafka import Message

from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import FRAMES, PREPARED_FRAMES
from diffqc.preprocess import FrameImageError, Preprocessor, SpecError, UnknownProduct
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.logging import frame_context
from diffqc.settings import KafkaSettings
from diffqc.store.blobs import BlobNotFound
from diffqc.v1 import preprocessing_pb2, preprocessing_pb2_grpc
from diffqc.v1.frame_pb2 import Frame

log = logging.getLogger(__name__)
GROUP = "preprocessing"
# What no retry can fix: the frame (its image) or its product's configuration.
POISON = (SpecError, FrameImageError, BlobNotFound)


class PreprocessingServicer(preprocessing_pb2_grpc.PreprocessingServiceServicer):
    def __init__(self, preprocessor: Preprocessor):
        self.preprocessor = preprocessor

    def Prepare(self, request: preprocessing_pb2.PrepareRequest, context: grpc.ServicerContext):
        with frame_context(request.frame.frame_id):
            try:
                return preprocessing_pb2.PrepareResponse(prepared=self.preprocessor.prepare(request.frame))
            except (UnknownProduct, BlobNotFound) as exc:
                context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            except SpecError as exc:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except FrameImageError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except DependencyUnavailable as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def stream_worker(preprocessor: Preprocessor, kafka: KafkaSettings) -> ConsumeLoop:
    """qc.frames.v1 -> prepare -> qc.frames.prepared.v1 (key = line), committed after delivery."""
    publisher = Publisher(kafka)

    def handle(frame: Frame, _msg: Message) -> None:
        try:
            prepared = preprocessor.prepare(frame)
        except POISON as exc:
            raise PoisonMessage(str(exc)) from exc
        publisher.publish(PREPARED_FRAMES, frame.line_id.encode(), prepared.SerializeToString(),
                          [("frame_id", frame.frame_id.encode())])

    return ConsumeLoop(kafka, FRAMES, GROUP, Frame.FromString, handle)
