"""gRPC ``Score`` for the synchronous path and the Kafka worker for the stream.

Both call ``Scorer.score`` (``diffqc.scoring``: inspection row, score point) and publish the
verdict on qc.inspections.v1 (key = line), so the bridge and the dashboards see every verdict
whichever path decided it; a DEFECT verdict also raises its alert on quality.alert (Avro, key =
line, ``diffqc.alerts``). The stream commits its offset only after both were delivered.
"""

from __future__ import annotations

import logging

import grpc
from confluent_kafka import Message

from diffqc.alerts import AlertPublisher
from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import INFERENCE_RESULTS, INSPECTIONS
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.logging import frame_context
from diffqc.scoring import Scorer, ScoringError
from diffqc.settings import KafkaSettings
from diffqc.v1 import scoring_pb2, scoring_pb2_grpc
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import InspectionVerdict

log = logging.getLogger(__name__)
GROUP = "scoring"


class VerdictPublisher:
    """Produces verdicts to qc.inspections.v1, and the alert of each DEFECT to quality.alert, and waits
    until the broker has them (acks=all). A redelivered frame publishes both again, with the same ids."""

    def __init__(self, kafka: KafkaSettings, alerts: AlertPublisher):
        self.publisher = Publisher(kafka)
        self.alerts = alerts

    def publish(self, verdict: InspectionVerdict) -> None:
        frame = verdict.frame
        self.publisher.publish(INSPECTIONS, frame.line_id.encode(), verdict.SerializeToString(),
                               [("frame_id", frame.frame_id.encode()),
                                ("inspection_id", verdict.inspection_id.encode())])
        self.alerts.publish(verdict)


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, scorer: Scorer, publisher: VerdictPublisher):
        self.scorer, self.publisher = scorer, publisher

    def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext):
        with frame_context(request.result.frame.frame_id):
            try:
                verdict = self.scorer.score(request.result)
                self.publisher.publish(verdict)
                return scoring_pb2.ScoreResponse(verdict=verdict)
            except ScoringError as exc:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except DependencyUnavailable as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def stream_worker(scorer: Scorer, kafka: KafkaSettings, alerts: AlertPublisher) -> ConsumeLoop:
    """qc.inference.v1 -> inspection row + score point -> qc.inspections.v1 (+ quality.alert), committed after."""
    publisher = VerdictPublisher(kafka, alerts)

    def handle(result: InferenceResult, _msg: Message) -> None:
        try:
            verdict = scorer.score(result)
        except ScoringError as exc:
            raise PoisonMessage(str(exc)) from exc
        publisher.publish(verdict)

    return ConsumeLoop(kafka, INFERENCE_RESULTS, GROUP, InferenceResult.FromString, handle)
