"""gRPC ``Score`` for the synchronous path and the Kafka worker for the stream.

Both call ``Scorer.score`` (``diffqc.scoring``: inspection row, score point) and publish the
verdict on qc.inspections.v1 (key = line), so the bridge and the dashboards see every verdict
whichever path decided it; a DEFECT verdict also raises its alert on quality.alert (Avro, key =
line, ``diffqc.alerts``). The stream commits its offset only after both were delivered. A second
stage reads the verdicts back and writes their score points (diffqc.scoring.points), so an InfluxDB
outage delays only the time series. A third fails closed: it reads the frame flow's dead letters and
reports each frame in them as NOT_INSPECTED, with its alert (diffqc.scoring.not_inspected).
"""

from __future__ import annotations

import grpc
from sqlalchemy import Engine

from diffqc.alerts import AlertPublisher
from diffqc.bus.consumer import ConsumeLoop
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import INFERENCE_RESULTS, INSPECTIONS
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, StreamStage, grpc_errors
from diffqc.scoring import Scorer, ScoringError
from diffqc.scoring.not_inspected import FailClosed
from diffqc.scoring.points import write_point
from diffqc.scoring.sink import ScoreSink
from diffqc.settings import KafkaSettings
from diffqc.v1 import scoring_pb2, scoring_pb2_grpc
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import InspectionVerdict

GROUP = "scoring"
POINTS_GROUP = "scoring.points"
ERRORS: ErrorTable = {
    ScoringError: grpc.StatusCode.FAILED_PRECONDITION,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class VerdictPublisher:
    """Produces verdicts to qc.inspections.v1, and the alert of each DEFECT to quality.alert, and waits
    until the broker has them (acks=all). A redelivered frame publishes both again, with the same ids."""

    def __init__(self, kafka: KafkaSettings, alerts: AlertPublisher):
        self.publisher = Publisher(kafka)
        self.alerts = alerts

    def publish(self, verdict: InspectionVerdict) -> None:
        self.publisher.send(INSPECTIONS, verdict, [("inspection_id", verdict.inspection_id.encode())])
        self.alerts.publish(verdict)


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scorer: Scorer, publisher: VerdictPublisher):
        self.scorer, self.publisher = scorer, publisher

    @grpc_errors(ERRORS, frame=lambda request: request.result.frame)
    def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext) -> scoring_pb2.ScoreResponse:
        verdict = self.scorer.score(request.result)
        self.publisher.publish(verdict)
        return scoring_pb2.ScoreResponse(verdict=verdict)


def stream_stage(scorer: Scorer, publisher: VerdictPublisher) -> StreamStage[InferenceResult, InspectionVerdict]:
    """qc.inference.v1 -> inspection row + score point -> qc.inspections.v1 (+ quality.alert), committed after."""
    return StreamStage(GROUP, INFERENCE_RESULTS, scorer.score, ERRORS, emit=publisher.publish)


def points_stage(sink: ScoreSink) -> StreamStage[InspectionVerdict, None]:
    """qc.inspections.v1 -> one score point per verdict (none for NOT_INSPECTED), committed after InfluxDB stored it."""
    return StreamStage(
        POINTS_GROUP,
        INSPECTIONS,
        lambda verdict: write_point(sink, verdict),
        {DependencyUnavailable: grpc.StatusCode.UNAVAILABLE},
    )


def fail_closed_stage(engine: Engine, kafka: KafkaSettings, publisher: VerdictPublisher) -> list[ConsumeLoop[bytes]]:
    """The dead letters of qc.frames.v1, qc.frames.prepared.v1 and qc.inference.v1 -> NOT_INSPECTED inspection
    row -> qc.inspections.v1 + quality.alert, committed after."""
    return FailClosed(engine, kafka, publisher.publish).loops()
