"""Publishing an event and waiting until the broker has it, the way every service must before it
acknowledges or commits anything (the side effect has to be durable first)."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaException, Producer

from diffqc.bus.config import producer_config
from diffqc.contracts.topics import Headers, M, ProtoTopic
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import KafkaSettings


class Publisher:
    """A thread-safe idempotent producer whose ``publish`` returns once the event is acknowledged
    (acks=all) and raises DependencyUnavailable when the broker refuses it or does not answer."""

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
        except (BufferError, KafkaException) as exc:
            raise DependencyUnavailable(f"cannot publish to {topic}: {exc}") from exc
        self.producer.flush(self.timeout_s + 5)  # serves our callback, or another thread's flush does
        if not delivered.wait(5):
            raise DependencyUnavailable(
                f"the broker did not acknowledge the event on {topic} within {self.timeout_s:g} s"
            )
        if outcome[0] is not None:
            raise DependencyUnavailable(f"the broker refused the event on {topic}: {outcome[0]}")

    def send(self, topic: ProtoTopic[M], message: M, headers: Headers | tuple[()] = ()) -> None:
        """``publish`` a protobuf message with its topic's key (the frame's line) and ``frame_id`` header."""
        self.publish(topic, topic.key(message), message.SerializeToString(), [*topic.headers(message), *headers])

    def close(self) -> None:
        self.producer.flush(self.timeout_s)
