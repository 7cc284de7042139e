"""The consume loop against a real broker: commit after side effects, retries, dead letters, drain."""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.contracts.topics import dead_letter_topic


def _produce(kafka, topic, values: list[bytes]) -> None:
    producer = Producer(producer_config(kafka))
    for value in values:
        producer.produce(topic, key=b"line-1", value=value)
    assert producer.flush(10) == 0


def _wait(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the consume loop"
        time.sleep(0.05)


@contextmanager
def _running(loop: ConsumeLoop):
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the consume loop did not stop"


def _read_all(kafka, topic, expected: int, timeout_s: float = 30.0) -> list:
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    return messages


def _topic(kafka) -> str:
    topic = f"test.loop.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [topic, dead_letter_topic(topic, kafka)])
    return topic


def test_good_messages_are_handled_and_poison_goes_to_the_dead_letter_topic_with_its_reason(kafka_settings):
    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b'{"n": 1}', b"\xff not json", b'{"n": 2, "bad": true}', b'{"n": 3}'])
    handled = []

    def handle(value, _msg):
        if value.get("bad"):
            raise PoisonMessage("field 'bad' is set")
        handled.append(value["n"])

    loop = ConsumeLoop(kafka_settings, topic, f"g-{uuid.uuid4().hex[:6]}", json.loads, handle)
    with _running(loop):
        _wait(lambda: handled == [1, 3])

    letters = _read_all(kafka_settings, loop.dead_letter_topic, 2)
    reasons = [dict(m.headers())["dlq.reason"].decode() for m in letters]
    assert [m.value() for m in letters] == [b"\xff not json", b'{"n": 2, "bad": true}']
    assert reasons[0].startswith("undecodable message: UnicodeDecodeError")
    assert reasons[1] == "rejected: field 'bad' is set"
    assert dict(letters[1].headers())["dlq.topic"].decode() == topic

    # Everything was committed: the same group, restarted, sees only what comes next.
    _produce(kafka_settings, topic, [b'{"n": 4}'])
    with _running(ConsumeLoop(kafka_settings, topic, loop.group, json.loads, handle)):
        _wait(lambda: handled[-1] == 4)
    assert handled == [1, 3, 4]


def test_transient_failures_are_retried_then_dead_lettered_when_retries_run_out(kafka_settings):
    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b"flaky", b"broken", b"after"])
    attempts: dict[bytes, int] = {}
    done = []

    def handle(value, _msg):
        attempts[value] = attempts.get(value, 0) + 1
        if value == b"flaky" and attempts[value] < 3:
            raise ConnectionError("database restarting")
        if value == b"broken":
            raise ConnectionError("still down")
        done.append(value)

    kafka = kafka_settings.model_copy(update={"max_retries": 2})
    loop = ConsumeLoop(kafka, topic, f"g-{uuid.uuid4().hex[:6]}", bytes, handle)
    with _running(loop):
        _wait(lambda: done == [b"flaky", b"after"])
    assert attempts == {b"flaky": 3, b"broken": 3, b"after": 1}
    [letter] = _read_all(kafka, loop.dead_letter_topic, 1)
    assert dict(letter.headers())["dlq.reason"] == b"failed after 3 attempts: ConnectionError: still down"


def test_stop_lets_the_message_in_hand_finish_and_commits_it(kafka_settings):
    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b"first", b"second"])
    started, release, finished = threading.Event(), threading.Event(), []

    def slow(value, _msg):
        started.set()
        release.wait(10)
        finished.append(value)

    group = f"g-{uuid.uuid4().hex[:6]}"
    with _running(ConsumeLoop(kafka_settings, topic, group, bytes, slow)) as stop:
        assert started.wait(30)
        stop.set()  # shutdown begins while "first" is in flight
        release.set()
    assert finished == [b"first"]

    seen = []
    with _running(ConsumeLoop(kafka_settings, topic, group, bytes, lambda v, _m: seen.append(v))):
        _wait(lambda: seen)
    assert seen == [b"second"]  # "first" was committed before the loop closed


def test_a_message_waiting_for_a_retry_at_shutdown_is_not_committed(kafka_settings):
    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b"frame"])
    failed = threading.Event()

    def failing(_value, _msg):
        failed.set()
        raise ConnectionError("triton unavailable")

    kafka = kafka_settings.model_copy(update={"retry_backoff_s": 30.0, "retry_backoff_max_s": 30.0})
    group = f"g-{uuid.uuid4().hex[:6]}"
    with _running(ConsumeLoop(kafka, topic, group, bytes, failing)):
        assert failed.wait(30)

    seen = []
    with _running(ConsumeLoop(kafka, topic, group, bytes, lambda v, _m: seen.append(v))):
        _wait(lambda: seen)
    assert seen == [b"frame"]  # redelivered: nothing lost


def test_a_dependency_outage_is_waited_out_however_long_it_lasts(kafka_settings):
    from diffqc.runtime.dependencies import DependencyUnavailable

    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b"frame"])
    attempts, done = [], []

    def handle(value, _msg):
        attempts.append(value)
        if len(attempts) < 6:  # more failures than max_retries allows for a faulty message
            raise DependencyUnavailable("Triton at 127.0.0.1:8001 is unavailable")
        done.append(value)

    kafka = kafka_settings.model_copy(update={"max_retries": 2})
    loop = ConsumeLoop(kafka, topic, f"g-{uuid.uuid4().hex[:6]}", bytes, handle)
    with _running(loop):
        _wait(lambda: done)
    assert done == [b"frame"] and len(attempts) == 6
    assert _read_all(kafka, loop.dead_letter_topic, 1, timeout_s=8) == []


def test_a_dead_letter_too_large_for_the_broker_keeps_its_reason_and_points_at_the_message(kafka_settings):
    topic = _topic(kafka_settings)
    big = bytes(999_900)  # fits the producer's 1 MB message.max.bytes alone, not with the dlq.* headers
    _produce(kafka_settings, topic, [big, b"next"])
    handled = []

    def handle(value, _msg):
        if value == big:
            raise PoisonMessage("bad frame")
        handled.append(value)

    loop = ConsumeLoop(kafka_settings, topic, f"g-{uuid.uuid4().hex[:6]}", bytes, handle)
    with _running(loop):
        _wait(lambda: handled == [b"next"])
    [letter] = _read_all(kafka_settings, loop.dead_letter_topic, 1)
    headers = dict(letter.headers())
    assert letter.value() is None and headers["dlq.offset"] == b"0"
    assert headers["dlq.reason"] == b"rejected: bad frame"
    assert b"MSG_SIZE_TOO_LARGE" in headers["dlq.value_dropped"]
