"""Kafka topics of the frame flow: each one knows its message type and its key.

Every topic is keyed by line id, so one line's frames stay in order within a partition.
Internal topics carry the protobuf messages of ``diffqc.v1`` (the same ones the gRPC APIs use),
each about one frame: the key is that frame's line and a ``frame_id`` header names it. The
plant-facing topics ``quality.alert``, ``quality.spc`` and ``quality.drift`` are Avro with Confluent framing
(schemas in ``protos/avro/``, registered in the Schema Registry; ``diffqc.contracts.avro``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf.message import Message

from diffqc.settings import KafkaSettings
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.preprocessing_pb2 import PreparedFrame
from diffqc.v1.scoring_pb2 import InspectionVerdict

M = TypeVar("M", bound=Message)
Headers = list[tuple[str, bytes | None]]  # Kafka headers: a value may be null


class ProtoTopic(str, Generic[M]):
    """A topic of protobuf messages, each about one frame (``frame_of``). It is its own name (a
    ``str``), so it goes wherever a topic name does."""

    message: type[M]
    frame_of: Callable[[M], Frame]

    def __new__(cls, name: str, message: type[M], frame_of: Callable[[M], Frame]) -> ProtoTopic[M]:
        topic = super().__new__(cls, name)
        topic.message, topic.frame_of = message, frame_of
        return topic

    def decode(self, value: bytes) -> M:
        return self.message.FromString(value)

    def key(self, message: M) -> bytes:
        return self.frame_of(message).line_id.encode()

    def headers(self, message: M) -> Headers:
        return [("frame_id", self.frame_of(message).frame_id.encode())]


FRAMES = ProtoTopic("qc.frames.v1", Frame, lambda m: m)  # ingestion -> preprocessing
PREPARED_FRAMES = ProtoTopic("qc.frames.prepared.v1", PreparedFrame, lambda m: m.frame)  # -> inference
INFERENCE_RESULTS = ProtoTopic("qc.inference.v1", InferenceResult, lambda m: m.frame)  # inference -> scoring
INSPECTIONS = ProtoTopic("qc.inspections.v1", InspectionVerdict, lambda m: m.frame)  # every verdict -> bridge
QUALITY_ALERT = "quality.alert"  # scoring -> MES (through the bridge): one alert per defect (Avro)
QUALITY_SPC = "quality.spc"  # bridge -> SPC consumers: one message per SPC signal (Avro)
QUALITY_DRIFT = "quality.drift"  # bridge -> SPC consumers: one message per drift episode of the good parts (Avro)

PROTOBUF_TOPICS: tuple[ProtoTopic, ...] = (FRAMES, PREPARED_FRAMES, INFERENCE_RESULTS, INSPECTIONS)
ALL_TOPICS: tuple[str, ...] = (*PROTOBUF_TOPICS, QUALITY_ALERT, QUALITY_SPC, QUALITY_DRIFT)


def dead_letter_topic(topic: str, kafka: KafkaSettings) -> str:
    """The dead-letter topic of ``topic``: poison messages of its consumers go there with the reason."""
    return f"{topic}{kafka.dead_letter_suffix}"
