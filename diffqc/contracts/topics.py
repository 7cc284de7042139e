"""Kafka topic names of the frame flow and the message each one carries.

Every topic is keyed by line id, so one line's frames stay in order within a partition.
Internal topics carry the protobuf messages of ``diffqc.v1`` (the same ones the gRPC APIs use);
the plant-facing topics ``quality.alert`` and ``quality.spc`` are Avro with Confluent framing
(schemas in ``protos/avro/``, registered in the Schema Registry).
"""

from __future__ import annotations

from google.protobuf.message import Message

from diffqc.settings import KafkaSettings
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame
from diffqc.v1.scoring_pb2 import InspectionVerdict

FRAMES = "qc.frames.v1"  # ingestion -> preprocessing
PREPARED_FRAMES = "qc.frames.prepared.v1"  # preprocessing -> inference
INFERENCE_RESULTS = "qc.inference.v1"  # inference -> scoring
INSPECTIONS = "qc.inspections.v1"  # scoring -> bridge, dashboards: every verdict
QUALITY_ALERT = "quality.alert"  # scoring -> MES (through the bridge): one alert per defect (Avro)
QUALITY_SPC = "quality.spc"  # bridge -> SPC consumers: one message per SPC signal (Avro)

ALL_TOPICS: tuple[str, ...] = (
    FRAMES, PREPARED_FRAMES, INFERENCE_RESULTS, INSPECTIONS, QUALITY_ALERT, QUALITY_SPC,
)

# The protobuf message type of each protobuf topic (decode with ``PROTOBUF_MESSAGES[topic].FromString``).
PROTOBUF_MESSAGES: dict[str, type[Message]] = {
    FRAMES: Frame,
    PREPARED_FRAMES: PreparedFrame,
    INFERENCE_RESULTS: InferenceResult,
    INSPECTIONS: InspectionVerdict,
}


def dead_letter_topic(topic: str, kafka: KafkaSettings) -> str:
    """The dead-letter topic of ``topic``: poison messages of its consumers go there with the reason."""
    return f"{topic}{kafka.dead_letter_suffix}"
