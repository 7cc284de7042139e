"""The consume loop against a real broker: commit after side effects, retries, dead letters, drain."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.contracts.topics import dead_letter_topic
from diffqc.runtime.dependencies import DependencyUnavailable


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


def _topic(kafka, partitions: int = 1) -> str:
    topic = f"test.loop.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [topic, dead_letter_topic(topic, kafka)], partitions)
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


def test_an_outage_longer_than_the_poll_interval_keeps_the_partition_and_handles_each_message_once(
    kafka_settings, caplog
):
    topic = _topic(kafka_settings)
    _produce(kafka_settings, topic, [b"first", b"second", b"third"])
    # librdkafka evicts a consumer that does not poll for max.poll.interval.ms: the outage lasts three times that.
    kafka = kafka_settings.model_copy(update={"session_timeout_ms": 3000, "max_poll_interval_ms": 3000})
    outage_s = 3 * kafka.max_poll_interval_ms / 1000
    loop = ConsumeLoop(kafka, topic, f"g-{uuid.uuid4().hex[:6]}", bytes, lambda value, _msg: handle(value))
    paused = {"group": loop.group, "topic": topic}
    outage_began: list[float] = []
    attempts: list[bytes] = []
    paused_during_outage: list[float | None] = []
    done: list[bytes] = []

    def handle(value: bytes) -> None:
        attempts.append(value)
        outage_began[:] = outage_began or [time.monotonic()]
        if time.monotonic() - outage_began[0] < outage_s:
            paused_during_outage.append(REGISTRY.get_sample_value("diffqc_consumer_paused", paused))
            raise DependencyUnavailable("Triton at 127.0.0.1:8001 is unavailable")
        done.append(value)

    with _running(loop):
        _wait(lambda: len(done) == 3, timeout_s=outage_s + 30)
        committed = _committed(kafka, loop.group, topic)
    assert done == [b"first", b"second", b"third"]  # in order, each handled successfully once
    assert attempts.count(b"first") > 3 and attempts.count(b"second") == attempts.count(b"third") == 1
    assert committed == [3]  # the consumer stayed the partition's owner: its commits were accepted
    assert paused_during_outage[1:] and set(paused_during_outage[1:]) == {1.0}  # paused from the first failure on
    assert REGISTRY.get_sample_value("diffqc_consumer_paused", paused) == 0
    assert not [r for r in caplog.records if "revoked" in r.getMessage() or "assigned" in r.getMessage()]
    assert _read_all(kafka, loop.dead_letter_topic, 1, timeout_s=5) == []


def test_a_partition_revoked_during_an_outage_leaves_its_message_to_the_new_owner(kafka_settings, caplog):
    kafka = kafka_settings.model_copy(update={"session_timeout_ms": 3000})
    topic = _topic(kafka, partitions=2)
    _produce_to(kafka, topic, {0: b"p0", 1: b"p1"})
    down, attempts, handled = threading.Event(), [], []
    down.set()
    group = f"g-{uuid.uuid4().hex[:6]}"
    # Eager rebalancing: a member joining revokes every partition, the one of the message in hand too.
    eager = {"partition.assignment.strategy": "roundrobin"}
    first = ConsumeLoop(kafka, topic, group, bytes, _outage_handler("first", down, attempts, handled), **eager)
    second = ConsumeLoop(kafka, topic, group, bytes, _outage_handler("second", down, attempts, handled), **eager)
    with _running(first):
        _wait(lambda: attempts)
        with _running(second):
            _wait(lambda: any("left uncommitted to its new owner" in r.getMessage() for r in caplog.records))
            down.clear()
            _wait(lambda: len(handled) == 2)
            committed = _committed(kafka, group, topic, partitions=2)
    assert sorted(value for _name, value in handled) == [b"p0", b"p1"]  # each handled successfully once
    assert {name for name, _value in handled} == {"first", "second"}  # one partition each after the rebalance
    assert committed == [1, 1]
    assert _read_all(kafka, first.dead_letter_topic, 1, timeout_s=5) == []


def test_a_partition_gained_during_an_outage_stays_paused_until_it_ends(kafka_settings, caplog):
    caplog.set_level(logging.INFO, logger="diffqc.bus.consumer")
    kafka = kafka_settings.model_copy(update={"session_timeout_ms": 3000})
    topic = _topic(kafka, partitions=2)
    down, attempts, handled = threading.Event(), [], []
    down.set()
    group = f"g-{uuid.uuid4().hex[:6]}"
    first = ConsumeLoop(kafka, topic, group, bytes, _outage_handler("first", down, attempts, handled))
    second = ConsumeLoop(kafka, topic, group, bytes, _outage_handler("second", down, attempts, handled))
    with _running(first):
        with _running(second):
            _wait(second.ready.is_set)  # cooperative-sticky: one partition each
            _produce_to(kafka, topic, {0: b"p0", 1: b"p1"})
            _wait(lambda: {name for name, _value in attempts} == {"first", "second"})
        # The second member left while its message waited: its partition moves to the first, which waits too.
        _wait(lambda: any("assigned during a wait for a retry: paused too" in r.getMessage() for r in caplog.records))
        [own] = {value for name, value in attempts if name == "first"}
        down.clear()
        _wait(lambda: len(handled) == 2)
        committed = _committed(kafka, group, topic, partitions=2)
    assert handled[0] == ("first", own)  # nothing of the gained partition was handled before its own message
    assert sorted(value for _name, value in handled) == [b"p0", b"p1"]
    assert committed == [1, 1]


def test_a_commit_refused_after_a_rebalance_leaves_the_message_to_its_owner_and_the_loop_goes_on(
    kafka_settings, caplog
):
    """A handler call outlasts max.poll.interval: librdkafka leaves the group, the other member takes the
    partition and handles the message; the late commit is refused, and the loop goes on instead of dying."""
    kafka = kafka_settings.model_copy(update={"session_timeout_ms": 3000, "max_poll_interval_ms": 3000})
    topic = _topic(kafka, partitions=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    go_on, handled = threading.Event(), []

    def handler(name: str):
        def handle(value: bytes, _msg) -> None:
            if name == "first" and not go_on.is_set():
                go_on.wait(60)  # a handler call that outlasts the poll interval
            handled.append((name, value))

        return handle

    first = ConsumeLoop(kafka, topic, group, bytes, handler("first"))
    stop_first = threading.Event()
    first_thread = threading.Thread(target=first.run, args=(stop_first,), daemon=True)
    first_thread.start()
    try:
        _wait(first.ready.is_set)
        with _running(ConsumeLoop(kafka, topic, group, bytes, handler("second"))):
            _produce_to(kafka, topic, {0: b"p0", 1: b"p1"})
            _wait(lambda: {v for name, v in handled if name == "second"} == {b"p0", b"p1"}, timeout_s=60)
            go_on.set()  # the first member's call ends: its commit is too late
            _wait(lambda: any("left uncommitted to the partition's owner" in r.getMessage() for r in caplog.records))
            assert first_thread.is_alive(), "a refused commit must not end the consume loop"
            _wait(lambda: _committed(kafka, group, topic, partitions=2) == [1, 1])
    finally:
        stop_first.set()
        first_thread.join(30)


def _outage_handler(name: str, down: threading.Event, attempts: list, handled: list):
    """A handler that records each attempt as (name, value) and fails while ``down`` is set."""

    def handle(value: bytes, _msg) -> None:
        attempts.append((name, value))
        if down.is_set():
            raise DependencyUnavailable("database unavailable")
        handled.append((name, value))

    return handle


def _produce_to(kafka, topic: str, values: dict[int, bytes]) -> None:
    producer = Producer(producer_config(kafka))
    for partition, value in values.items():
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(10) == 0


def _committed(kafka, group: str, topic: str, partitions: int = 1) -> list[int]:
    """The group's committed offset of each partition, read without joining the group."""
    reader = Consumer(consumer_config(kafka, group))
    try:
        positions = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        reader.close()
    return [position.offset for position in positions]
