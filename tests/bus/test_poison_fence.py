"""A message that kills its consumer is dead-lettered after a restart instead of crash-looping the
stage: the attempts are counted in PostgreSQL (diffqc.store.poison), outside the process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid

import pytest
from confluent_kafka import Producer

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.bus.consumer import ConsumeLoop
from diffqc.contracts.topics import dead_letter_topic
from diffqc.infra.services import PROJECT_ROOT
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.poison import PoisonFence
from tests.bus.test_consumer import _read_all, _running, _wait


@pytest.fixture
def fence(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield PoisonFence(engine)
    engine.dispose()


@pytest.fixture
def kafka(kafka_settings):
    return kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex})


def _topic(kafka, values: list[bytes]) -> str:
    topic = f"test.fence.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka, [topic, dead_letter_topic(topic, kafka)])
    producer = Producer(producer_config(kafka))
    for value in values:
        producer.produce(topic, key=b"line-1", value=value)
    assert producer.flush(10) == 0
    return topic


def _worker(kafka, topic: str, group: str, postgres_url: str, journal) -> subprocess.Popen:
    argv = [kafka.bootstrap_servers, kafka.group_prefix, topic, group, postgres_url, str(journal)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bus.poison_worker", *argv],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(journal) -> list[str]:
    return journal.read_text().splitlines() if journal.exists() else []


@pytest.mark.timeout(180)
def test_a_message_that_killed_the_consumer_is_dead_lettered_unhandled_after_the_restart(
    kafka, fence, postgres_url, tmp_path
):
    topic, group = _topic(kafka, [b"first", b"hang", b"after"]), "fenced"
    group_id = f"{kafka.group_prefix}.{group}"
    journal = tmp_path / "journal"

    first = _worker(kafka, topic, group, postgres_url, journal)
    try:
        _wait(lambda: "started hang" in _lines(journal), 60)
        assert fence.attempts(group_id, topic, 0, 1) == 1  # counted before the handler ran
        assert fence.attempts(group_id, topic, 0, 0) == 0  # "first" was committed and forgotten
    finally:
        first.kill()  # SIGKILL mid-message: no handler, no retry counter of the process survives
        first.communicate(timeout=30)

    second = _worker(kafka, topic, group, postgres_url, journal)
    try:
        _wait(lambda: "done after" in _lines(journal), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-3000:]

    # "hang" was not handled a second time: it went to the dead-letter topic with the reason.
    assert _lines(journal) == ["started first", "done first", "started hang", "started after", "done after"]
    [letter] = _read_all(kafka, dead_letter_topic(topic, kafka), 1)
    headers = dict(letter.headers())
    assert letter.value() == b"hang" and headers["dlq.offset"] == b"1"
    assert headers["dlq.reason"].decode().startswith("poison: its handling began 1 time(s) and never finished")
    assert [fence.attempts(group_id, topic, 0, offset) for offset in range(3)] == [0, 0, 0]  # all committed


def test_a_shutdown_while_a_message_waits_for_its_retry_is_not_counted_as_a_crash(kafka, fence):
    topic, group = _topic(kafka, [b"frame"]), f"g-{uuid.uuid4().hex[:6]}"
    failed = threading.Event()

    def failing(_value, _msg):
        failed.set()
        raise ConnectionError("triton unavailable")

    slow = kafka.model_copy(update={"retry_backoff_s": 30.0, "retry_backoff_max_s": 30.0})
    loop = ConsumeLoop(slow, topic, group, bytes, failing, fence)
    group_id = loop._consumer_config["group.id"]
    with _running(loop):
        assert failed.wait(30)
        assert fence.attempts(group_id, topic, 0, 0) == 1
    assert fence.attempts(group_id, topic, 0, 0) == 0  # taken back: the process did not die

    seen: list[bytes] = []
    with _running(ConsumeLoop(kafka, topic, group, bytes, lambda v, _m: seen.append(v), fence)):
        _wait(lambda: seen)
    assert seen == [b"frame"]  # handled again after the restart, not dead-lettered
    assert _read_all(kafka, dead_letter_topic(topic, kafka), 1, timeout_s=5) == []


def test_attempts_count_per_group_and_offset_and_a_commit_clears_earlier_offsets_too(fence):
    assert [fence.begin("g", "t", 0, 7) for _ in range(3)] == [1, 2, 3]
    assert fence.begin("other", "t", 0, 7) == 1 and fence.begin("g", "t", 1, 7) == 1
    fence.begin("g", "t", 0, 5)  # left behind by a crash between a commit and its clear
    fence.release("g", "t", 0, 7)
    assert fence.attempts("g", "t", 0, 7) == 2
    fence.clear("g", "t", 0, 7)
    assert [fence.attempts("g", "t", 0, o) for o in (5, 7)] == [0, 0]
    assert fence.attempts("other", "t", 0, 7) == 1 and fence.attempts("g", "t", 1, 7) == 1
