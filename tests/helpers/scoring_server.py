"""A real gRPC server (GrpcServer with a slow ScoringService) and requests for it."""

from __future__ import annotations

import grpc

from diffqc.runtime.grpc_server import GrpcServer
from diffqc.v1 import inference_pb2, scoring_pb2, scoring_pb2_grpc
from tests.helpers.slow_scoring_service import SERVICE_NAME, SlowScoring


def score_request(frame_id: str = "frame-1", pixel: float = 0.7) -> scoring_pb2.ScoreRequest:
    result = inference_pb2.InferenceResult(component_scores={"pixel": pixel})
    result.frame.frame_id = frame_id
    return scoring_pb2.ScoreRequest(result=result)


def scoring_server(delay_s: float = 0.0) -> tuple[GrpcServer, SlowScoring]:
    servicer = SlowScoring(delay_s)

    def register(server: grpc.Server) -> None:
        scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server)

    return GrpcServer("test-scoring", register, [SERVICE_NAME], port=0, workers=4), servicer
