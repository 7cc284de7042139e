"""The publisher tells an event the broker refuses for good from a broker that is unavailable."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaError

from diffqc.bus.admin import ensure_topics
from diffqc.bus.producer import Publisher, PublishRefused, refusal
from diffqc.infra.ports import free_port
from diffqc.runtime.dependencies import DependencyUnavailable


def test_an_event_above_message_max_bytes_is_refused_at_once_and_a_smaller_one_goes_through(kafka_settings):
    topic = f"test.pub.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_settings, [topic])
    publisher = Publisher(kafka_settings, timeout_s=5)
    try:
        started = time.monotonic()
        with pytest.raises(PublishRefused) as refused:
            publisher.publish(topic, b"k", bytes(2 * 1024 * 1024))  # the producer's message.max.bytes: 1 MB
        assert time.monotonic() - started < 2  # refused, not retried until the timeout
        assert refused.value.error.code() == KafkaError.MSG_SIZE_TOO_LARGE
        assert str(refused.value) == f"the event on {topic} was refused for good: MSG_SIZE_TOO_LARGE: " + str(
            refused.value.error.str()
        )
        publisher.publish(topic, b"k", bytes(512 * 1024))  # the publisher is still usable
    finally:
        publisher.close()


def test_a_lower_message_max_bytes_of_the_producer_refuses_smaller_events(kafka_settings):
    publisher = Publisher(kafka_settings, timeout_s=5, **{"message.max.bytes": 10_000})
    try:
        with pytest.raises(PublishRefused, match="MSG_SIZE_TOO_LARGE"):
            publisher.publish(f"test.pub.{uuid.uuid4().hex[:6]}", None, bytes(20_000))
    finally:
        publisher.close()


def test_an_unreachable_broker_stays_a_transient_failure(kafka_settings):
    dead = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    publisher = Publisher(dead, timeout_s=1)
    with pytest.raises(DependencyUnavailable):
        publisher.publish("test.pub.dead", None, b"x")


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), True),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), True),
        (KafkaError(KafkaError._UNKNOWN_TOPIC), True),
        (KafkaError(KafkaError.INVALID_MSG), True),
        (KafkaError(KafkaError._MSG_TIMED_OUT), False),  # the broker did not answer in time
        (KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION), False),  # a leader election
        (KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, retriable=True), False),  # metadata still propagating
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, fatal=True), False),  # the producer is broken, not the event
    ],
    ids=lambda v: v.name() if isinstance(v, KafkaError) else str(v),
)
def test_kafka_errors_are_classified_by_code_fatal_and_retriable(error, permanent):
    assert isinstance(refusal("t", error), PublishRefused if permanent else DependencyUnavailable)
