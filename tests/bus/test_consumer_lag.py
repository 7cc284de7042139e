"""diffqc_consumer_lag against a real broker: the consume loop reports how far its group is behind each
partition it holds, down to 0 once it caught up, and drops the partitions it no longer holds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer
from prometheus_client import REGISTRY

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.bus.consumer import ConsumeLoop
from diffqc.contracts.topics import dead_letter_topic
from diffqc.runtime.dependencies import DependencyUnavailable


def _topic(kafka, partitions: int) -> str:
    topic = f"test.lag.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [topic, dead_letter_topic(topic, kafka)], partitions)
    return topic


def _produce(kafka, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer(producer_config(kafka))
    for partition, count in per_partition.items():
        for n in range(count):
            producer.produce(topic, value=str(n).encode(), partition=partition)
    assert producer.flush(10) == 0


def _lag(group: str, topic: str) -> dict[int, float]:
    """The lag each partition of ``topic`` reports for ``group``, by partition."""
    return {
        int(sample.labels["partition"]): sample.value
        for family in REGISTRY.collect()
        if family.name == "diffqc_consumer_lag"
        for sample in family.samples
        if sample.labels["group"] == group and sample.labels["topic"] == topic
    }


def _wait(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the consume loop"
        time.sleep(0.05)


def _wait_for_lag(group: str, topic: str, expected: dict[int, int]) -> None:
    deadline = time.monotonic() + 60
    while (reported := _lag(group, topic)) != expected:
        assert time.monotonic() < deadline, f"the loop reports lag {reported}, not {expected}"
        time.sleep(0.05)


@contextmanager
def _running(loop: ConsumeLoop) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the consume loop did not stop"


def test_lag_counts_what_the_group_has_not_committed_and_reaches_zero_once_caught_up(kafka_settings):
    topic = _topic(kafka_settings, partitions=1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    _produce(kafka_settings, topic, {0: 10})
    down, handled = threading.Event(), []
    down.set()

    def handle(value: bytes, _msg) -> None:
        if value == b"4" and down.is_set():
            raise DependencyUnavailable("triton is down")  # the loop waits here, polling, its partition paused
        handled.append(value)

    with _running(ConsumeLoop(kafka_settings, topic, group, bytes, handle)):
        _wait_for_lag(group, topic, {0: 6})  # 0-3 committed; 4 (in hand) to 9 to do
        down.clear()
        _wait_for_lag(group, topic, {0: 0})
        assert len(handled) == 10
    assert _lag(group, topic) == {}  # a stopped loop reports nothing: the partition's next owner does


def test_a_group_that_never_committed_lags_by_the_whole_log_and_lost_partitions_are_dropped(kafka_settings):
    kafka = kafka_settings.model_copy(update={"session_timeout_ms": 3000})
    topic = _topic(kafka, partitions=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    produced = {0: 4, 1: 2}
    _produce(kafka, topic, produced)

    def stuck(_value: bytes, _msg) -> None:
        raise DependencyUnavailable("the database is down")  # nothing is ever committed

    with _running(ConsumeLoop(kafka, topic, group, bytes, stuck)):
        _wait_for_lag(group, topic, produced)
        # Another member joins the group and takes one partition: the loop reports only the one it kept.
        other = Consumer(consumer_config(kafka, group))
        other.subscribe([topic])

        def other_holds_one() -> bool:
            other.poll(0.2)  # polling is how it joins
            return len(other.assignment()) == 1 and len(_lag(group, topic)) == 1

        try:
            _wait(other_holds_one)
            [taken] = [tp.partition for tp in other.assignment()]
            kept = 1 - taken
            assert _lag(group, topic) == {kept: produced[kept]}
        finally:
            other.close()
