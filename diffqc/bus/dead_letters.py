"""Reading and replaying dead letters: what ``diffqc dlq list`` and ``diffqc dlq replay`` do.

A dead-letter topic (``<topic><DIFFQC_KAFKA_DEAD_LETTER_SUFFIX>``, diffqc.bus.consumer) keeps each poison
message with its original key, value and headers plus the ``dlq.*`` headers that say why, where and
when. Reading never joins a consumer group nor commits: a throwaway consumer is assigned every partition
and reads up to the end the topic had when the read began, so a read is bounded and leaves nothing
behind. A replay re-produces the original value and headers (without the ``dlq.*`` ones) to the topic
the message was dead-lettered from, once its cause is fixed; every stage is idempotent on frame ids,
so replaying a letter twice, or one whose frame was handled meanwhile, changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from diffqc.bus.config import consumer_config
from diffqc.bus.consumer import message_headers
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import Headers
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import KafkaSettings

DLQ_HEADER_PREFIX = "dlq."
READ_TIMEOUT_S = 30.0
POLL_S = 0.2


class UnknownDeadLetterTopic(ValueError):
    """The broker has no such dead-letter topic."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter topic, where it is there, and what its ``dlq.*`` headers say."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(repr=False)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name and value is not None:
                return value.decode(errors="replace")
        return None

    @property
    def frame_id(self) -> str | None:
        return self.header("frame_id")

    @property
    def reason(self) -> str:
        return self.header("dlq.reason") or ""

    @property
    def stage(self) -> str:
        """The consumer group that gave up on it."""
        return self.header("dlq.group") or ""

    @property
    def failed_at(self) -> str:
        return self.header("dlq.failed_at") or ""

    @property
    def value_dropped(self) -> str | None:
        """Why the letter has no value (too large to keep with its headers), else None."""
        return self.header("dlq.value_dropped")

    def source(self, kafka: KafkaSettings) -> str:
        """The topic it was dead-lettered from."""
        return self.header("dlq.topic") or self.topic.removesuffix(kafka.dead_letter_suffix)

    def original_headers(self) -> Headers:
        return [(name, value) for name, value in self.headers if not name.startswith(DLQ_HEADER_PREFIX)]


@dataclass(frozen=True)
class Replay:
    """What ``replay`` did: the letters re-produced, those it could not (with why), frame ids not found."""

    replayed: list[DeadLetter]
    skipped: list[tuple[DeadLetter, str]]
    not_found: list[str]


def dead_letter_topic_name(topic: str, kafka: KafkaSettings) -> str:
    """``topic`` as a dead-letter topic: given as it is, or as the topic whose dead letters it holds."""
    return topic if topic.endswith(kafka.dead_letter_suffix) else f"{topic}{kafka.dead_letter_suffix}"


class DeadLetterReader:
    """A throwaway consumer (no group membership, no commits) that reads dead-letter topics."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = READ_TIMEOUT_S):
        self.kafka, self.timeout_s = kafka, timeout_s
        self.consumer = Consumer(consumer_config(kafka, f"dlq-reader-{uuid.uuid4().hex[:8]}"))

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()

    def topics(self, topic: str | None = None) -> list[str]:
        """The dead-letter topic ``topic`` names (UnknownDeadLetterTopic when the broker has none), or every
        dead-letter topic on the broker."""
        names = sorted(t for t in self._metadata().topics if t.endswith(self.kafka.dead_letter_suffix))
        if topic is None:
            return names
        wanted = dead_letter_topic_name(topic, self.kafka)
        if wanted not in names:
            raise UnknownDeadLetterTopic(
                f"the broker at {self.kafka.bootstrap_servers} has no dead-letter topic {wanted!r}; "
                f"it has: {', '.join(names) or 'none'}"
            )
        return [wanted]

    def read(self, topic: str, newest: int | None = None) -> list[DeadLetter]:
        """The letters of ``topic`` up to its end when the read began (only the ``newest`` of each partition,
        when given), oldest first; DependencyUnavailable when the broker does not deliver them in time."""
        deadline = time.monotonic() + self.timeout_s
        ends: dict[int, int] = {}
        starts = []
        for partition in self._metadata(topic).topics[topic].partitions:
            low, high = self._call(self.consumer.get_watermark_offsets, TopicPartition(topic, partition))
            start = low if newest is None else max(low, high - newest)
            if high > start:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, start))
        letters: list[DeadLetter] = []
        if not starts:
            return letters
        self.consumer.assign(starts)
        try:
            while ends:
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(
                        f"read {len(letters)} dead letters of {topic} but not the rest within {self.timeout_s:g} s"
                    )
                msg = self.consumer.poll(POLL_S)
                if msg is None or msg.error() is not None:
                    continue
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if partition in ends and offset < ends[partition]:
                    letters.append(_letter(msg))
                if partition in ends and offset + 1 >= ends[partition]:
                    del ends[partition]
        finally:
            self.consumer.unassign()
        return sorted(letters, key=lambda letter: (letter.failed_at, letter.partition, letter.offset))

    def _metadata(self, topic: str | None = None):
        return self._call(self.consumer.list_topics, topic)

    def _call(self, call, *args):
        try:
            return call(*args, timeout=min(self.timeout_s, 10.0))
        except KafkaException as exc:
            raise DependencyUnavailable(f"the broker at {self.kafka.bootstrap_servers} did not answer: {exc}") from None


def newest_letters(kafka: KafkaSettings, topic: str | None, limit: int) -> tuple[list[DeadLetter], list[str]]:
    """The ``limit`` newest dead letters of ``topic`` (or of every dead-letter topic), oldest first, and the
    topics read."""
    with DeadLetterReader(kafka) as reader:
        topics = reader.topics(topic)
        letters = [letter for name in topics for letter in reader.read(name, newest=limit)]
    letters.sort(key=lambda letter: (letter.failed_at, letter.topic, letter.partition, letter.offset))
    return letters[-limit:] if limit else [], topics


def replay(kafka: KafkaSettings, topic: str, frame_ids: Iterable[str] | None) -> Replay:
    """Re-produce the letters of the dead-letter topic ``topic`` about ``frame_ids`` (None: all of them) to the
    topics they came from, each frame's newest letter once."""
    with DeadLetterReader(kafka) as reader:
        [name] = reader.topics(topic)
        letters = reader.read(name)
    wanted = None if frame_ids is None else set(frame_ids)
    chosen: dict[object, DeadLetter] = {}
    for letter in letters:  # oldest first: a frame's newer letter replaces its older one
        if wanted is None or letter.frame_id in wanted:
            key = (letter.source(kafka), letter.frame_id) if letter.frame_id else (letter.partition, letter.offset)
            chosen[key] = letter
    replayed, skipped = [], []
    publisher = Publisher(kafka)
    try:
        for letter in chosen.values():
            if letter.value is None:
                skipped.append((letter, f"its value was not kept ({letter.value_dropped or 'none'})"))
                continue
            publisher.publish(letter.source(kafka), letter.key, letter.value, letter.original_headers())
            replayed.append(letter)
    finally:
        publisher.close()
    found = {letter.frame_id for letter in chosen.values()}
    return Replay(replayed, skipped, sorted((wanted or set()) - found))


def _letter(msg: Message) -> DeadLetter:
    return DeadLetter(
        topic=str(msg.topic()),
        partition=int(msg.partition() or 0),
        offset=int(msg.offset() or 0),
        key=msg.key(),
        value=msg.value(),
        headers=message_headers(msg),
    )


def failed_at_display(letter: DeadLetter) -> str:
    """The letter's ``dlq.failed_at`` to the second, in UTC; as stored when it is not a time."""
    try:
        return datetime.fromisoformat(letter.failed_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return letter.failed_at
