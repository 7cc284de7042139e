"""Publishing an event and waiting until the broker has it, the way every service must before it
acknowledges or commits anything (the side effect has to be durable first).

A refusal is either transient (the broker is down, slow, electing a leader: DependencyUnavailable,
retried for as long as it lasts) or permanent for this event (too large for ``message.max.bytes``,
malformed, a topic it may not write or that does not exist: PublishRefused, which no retry fixes).
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException, Producer

from diffqc.bus.config import producer_config
from diffqc.contracts.topics import Headers, M, ProtoTopic
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import KafkaSettings

# Error codes that no retry of the same event can fix (librdkafka's local ones start with "_"; its own
# message.max.bytes check answers MSG_SIZE_TOO_LARGE like the broker).
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._INVALID_ARG,
    }
)


class PublishRefused(Exception):
    """The broker (or the client's own limits) refused this event for good; retrying it cannot help."""

    def __init__(self, topic: str, error: KafkaError):
        super().__init__(f"the event on {topic} was refused for good: {error.name()}: {error.str()}")
        self.topic, self.error = topic, error


def refusal(topic: str, error: KafkaError) -> PublishRefused | DependencyUnavailable:
    """What a producer error means for the event: permanent (PublishRefused) or transient.

    A fatal error (the idempotent producer itself is broken) or one the client marks retriable is not
    the event's fault, whatever its code.
    """
    if error.code() in PERMANENT_ERRORS and not error.fatal() and not error.retriable():
        return PublishRefused(topic, error)
    return DependencyUnavailable(f"the broker refused the event on {topic}: {error.name()}: {error.str()}")


class Publisher:
    """A thread-safe idempotent producer whose ``publish`` returns once the event is acknowledged
    (acks=all); it raises PublishRefused when the event can never be written and DependencyUnavailable
    when the broker is unavailable or does not answer."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 30.0, **overrides):
        # A message that timed out for us must not be delivered later behind our back.
        self.producer = Producer(producer_config(kafka, **{"message.timeout.ms": int(timeout_s * 1000), **overrides}))
        self.timeout_s = timeout_s

    def publish(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | tuple[()] = ()) -> None:
        delivered = threading.Event()
        outcome: list = []

        def on_delivery(err, _msg) -> None:
            outcome.append(err)
            delivered.set()

        try:
            self.producer.produce(topic, key=key, value=value, headers=list(headers), on_delivery=on_delivery)
        except BufferError as exc:  # the local queue is full: the broker is not keeping up
            raise DependencyUnavailable(f"cannot publish to {topic}: {exc}") from exc
        except KafkaException as exc:
            raise refusal(topic, exc.args[0]) from exc
        self.producer.flush(self.timeout_s + 5)  # serves our callback, or another thread's flush does
        if not delivered.wait(5):
            raise DependencyUnavailable(
                f"the broker did not acknowledge the event on {topic} within {self.timeout_s:g} s"
            )
        if outcome[0] is not None:
            raise refusal(topic, outcome[0])

    def send(self, topic: ProtoTopic[M], message: M, headers: Headers | tuple[()] = ()) -> None:
        """``publish`` a protobuf message with its topic's key (the frame's line) and ``frame_id`` header."""
        self.publish(topic, topic.key(message), message.SerializeToString(), [*topic.headers(message), *headers])

    def close(self) -> None:
        self.producer.flush(self.timeout_s)
