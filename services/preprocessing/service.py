"""gRPC ``Prepare`` for the synchronous path and the Kafka stage for the stream.

Both call ``Preprocessor.prepare`` (``diffqc.preprocess``): the product's spec from the database,
the image from the blob store, the tile tensors back to the blob store.
"""

from __future__ import annotations

import grpc

from diffqc.contracts.topics import FRAMES, PREPARED_FRAMES
from diffqc.preprocess import FrameImageError, Preprocessor, SpecError, UnknownProduct
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, StreamStage, grpc_errors
from diffqc.store.blobs import BlobNotFound
from diffqc.v1 import preprocessing_pb2, preprocessing_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.preprocessing_pb2 import PreparedFrame

GROUP = "preprocessing"
# The frame (its image) or its product's configuration is at fault: no retry can fix those.
ERRORS: ErrorTable = {
    UnknownProduct: grpc.StatusCode.NOT_FOUND,
    BlobNotFound: grpc.StatusCode.NOT_FOUND,
    SpecError: grpc.StatusCode.FAILED_PRECONDITION,
    FrameImageError: grpc.StatusCode.INVALID_ARGUMENT,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class PreprocessingServicer(preprocessing_pb2_grpc.PreprocessingServiceServicer):
    def __init__(self, preprocessor: Preprocessor):
        self.preprocessor = preprocessor

    @grpc_errors(ERRORS, frame=lambda request: request.frame)
    def Prepare(
        self, request: preprocessing_pb2.PrepareRequest, context: grpc.ServicerContext
    ) -> preprocessing_pb2.PrepareResponse:
        return preprocessing_pb2.PrepareResponse(prepared=self.preprocessor.prepare(request.frame))


def stream_stage(preprocessor: Preprocessor) -> StreamStage[Frame, PreparedFrame]:
    """qc.frames.v1 -> prepare -> qc.frames.prepared.v1, committed after delivery."""
    return StreamStage(GROUP, FRAMES, preprocessor.prepare, ERRORS, output=PREPARED_FRAMES)
