"""One error table per service decides both the gRPC status and the stream's retry-or-dead-letter."""

from __future__ import annotations

import uuid

import grpc

from diffqc.bus.admin import ensure_topics
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import ProtoTopic, dead_letter_topic
from diffqc.preprocess import FrameImageError, SpecError, UnknownProduct
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import StreamStage, poison_errors, status_of
from diffqc.v1.frame_pb2 import Frame
from services.preprocessing.service import ERRORS
from tests.bus.test_consumer import _read_all, _running, _wait


def test_the_most_specific_class_in_the_table_decides_the_status():
    assert status_of(ERRORS, UnknownProduct("x")) is grpc.StatusCode.NOT_FOUND  # a SpecError, listed itself
    assert status_of(ERRORS, SpecError("x")) is grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(ERRORS, KeyError("x")) is None


def test_everything_but_an_unavailable_dependency_is_poison():
    poison = poison_errors(ERRORS)
    assert FrameImageError in poison and SpecError in poison
    assert DependencyUnavailable not in poison  # retried for as long as the outage lasts


def test_a_result_the_broker_refuses_for_good_dead_letters_its_input_once(kafka_settings):
    kafka = kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex})
    source = ProtoTopic(f"test.stage.in.{uuid.uuid4().hex[:6]}", Frame, lambda m: m)
    output = ProtoTopic(f"test.stage.out.{uuid.uuid4().hex[:6]}", Frame, lambda m: m)
    ensure_topics(kafka, [source, output, dead_letter_topic(source, kafka)])
    handled: list[str] = []

    def handle(frame: Frame) -> Frame:
        handled.append(frame.frame_id)
        if frame.frame_id == "huge":  # a result above the producer's message.max.bytes (1 MB)
            frame.process_parameters.update({f"p{i}": 0.0 for i in range(100_000)})
        return frame

    publisher = Publisher(kafka)
    for frame_id in ("huge", "small"):
        publisher.send(source, Frame(frame_id=frame_id, line_id="L1"))
    publisher.close()
    stage = StreamStage("stage", source, handle, ERRORS, output=output)
    with _running(stage.worker(kafka)):
        _wait(lambda: handled == ["huge", "small"])
        [letter] = _read_all(kafka, dead_letter_topic(source, kafka), 1)
    assert handled == ["huge", "small"]  # refused for good: not retried
    reason = dict(letter.headers())["dlq.reason"].decode()
    assert reason.startswith(f"rejected: the event on {output} was refused for good: MSG_SIZE_TOO_LARGE")
    assert [Frame.FromString(m.value()).frame_id for m in _read_all(kafka, output, 1)] == ["small"]
