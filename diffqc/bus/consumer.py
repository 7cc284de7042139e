"""The consume loop every streaming service runs.

At-least-once with no loss: a message's offset is committed only after its handler's side
effects succeeded (or after it went to the dead-letter topic). Failures are retried with bounded
exponential backoff with jitter: while a dependency is down (DependencyUnavailable) for as long as it takes,
since the message is not at fault; otherwise up to ``max_retries`` times.

While a failed message waits for its retry, the loop pauses its partitions and keeps polling: a
paused partition delivers nothing, but the polls keep the consumer in its group, which librdkafka
leaves when the application does not poll for ``max.poll.interval.ms``. So an outage of any
length costs no eviction, no rebalance and no refused commit when the dependency is back; the
partitions resume once the message is handled. Should the group take the message's partition
away meanwhile (a rebalance, another member joining), the message is dropped uncommitted and its
new owner handles it from the committed offset. So is a message whose commit the group refuses because
it rebalanced while the handler ran (a replica joined or left and this member, not polling, missed
it): the loop goes on, and the partition's owner handles the message again (every handler is
idempotent by frame id).

A message that can never succeed (it does not decode, the handler raises PoisonMessage, or its
retries ran out) goes to ``<topic><dead_letter_suffix>`` with the reason in its headers, so one
bad frame cannot stall a line. So does a message whose result the broker refuses for good (PublishRefused: too
large, a topic it may not write): retrying cannot change that.

A message that kills the process (out of memory, SIGKILL) never reaches the retry counter: it is
redelivered after the restart and kills it again. With a ``Fence`` (a counter outside the process,
``diffqc.store.poison``), every delivery is counted before it is handled and forgotten once
committed, so a message whose count reaches ``poison_attempts`` is dead-lettered unhandled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from diffqc.bus.config import consumer_config
from diffqc.bus.lag import ConsumerLag
from diffqc.bus.producer import Publisher, PublishRefused
from diffqc.contracts.topics import Headers, dead_letter_topic
from diffqc.core import clock
from diffqc.core.backoff import backoff_delay
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.logging import frame_context
from diffqc.runtime.metrics import CONSUMERS_PAUSED, HANDLE_SECONDS, MESSAGES
from diffqc.settings import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_S = 0.2  # longest one poll blocks: how late a stop, or the end of a retry's delay, is noticed
# A commit refused because the group moved on (a new generation) while the message was handled.
REBALANCED = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}


class PoisonMessage(Exception):
    """Raised by a handler for a message that no retry can fix (bad content, unknown product ...)."""


class Fence(Protocol):
    """Counts, outside the process, how often the handling of one message began."""

    def begin(self, group: str, topic: str, partition: int, offset: int) -> int:
        """Count one more attempt (durably, before handling) and return the count, this one included."""
        ...

    def release(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Take back an attempt that ended without a crash (shutdown while waiting for a retry)."""
        ...

    def clear(self, group: str, topic: str, partition: int, offset: int) -> None:
        """The offset is committed: forget its attempts and those of earlier offsets of the partition."""
        ...


class _Interrupted(Exception):
    """Shutdown began while a failing message waited for its next retry: leave it uncommitted."""


class _Revoked(Exception):
    """The group took away the partition of the message waiting for its retry: its new owner handles it."""


class _Partitions:
    """The consumer's partitions, paused while the message in hand waits for a retry, and polled meanwhile.

    Its ``on_assign`` and ``on_revoke`` are the consumer's rebalance callbacks, which librdkafka calls
    from inside ``poll``.
    """

    def __init__(
        self, consumer: Consumer, incremental: bool, ready: threading.Event, paused_metric: Gauge, lag: ConsumerLag
    ):
        self.consumer = consumer
        self.lag = lag
        self.incremental = incremental  # cooperative rebalancing: assignments come and go partition by partition
        self.ready = ready
        self.paused_metric = paused_metric
        self.paused = False
        self.held: tuple[str, int] | None = None  # (topic, partition) of the message in hand
        self.held_revoked = False

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready.set()
        self.lag.assigned(partitions)
        if self.paused:  # gained during a wait: paused with the others before they fetch anything
            (consumer.incremental_assign if self.incremental else consumer.assign)(partitions)
            consumer.pause(partitions)
            log.info("%s assigned during a wait for a retry: paused too", _names(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.paused:  # librdkafka keeps a partition's pause across its removal: one assigned again must fetch
            consumer.resume(partitions)
        self.held_revoked |= self.held in {(p.topic, p.partition) for p in partitions}
        self.lag.revoked(partitions)

    def hold(self, msg: Message) -> None:
        self.held, self.held_revoked = (str(msg.topic()), int(msg.partition() or 0)), False

    def wait(self, delay: float, stop: threading.Event) -> None:
        """Let ``delay`` seconds pass polling, the partitions paused. Raises _Interrupted once ``stop`` is
        set, _Revoked once the group took away the held message's partition."""
        if not self.paused:
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
            self.paused_metric.inc()
        deadline = time.monotonic() + delay
        while True:
            if stop.is_set():
                raise _Interrupted
            if self.held_revoked:
                raise _Revoked
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = self.consumer.poll(min(remaining, POLL_S))
            self.lag.update()
            if event is None:
                continue
            if event.error() is None:  # librdkafka drops what it fetched before a pause: this is a bug there
                where = _name(event.topic(), event.partition())
                raise RuntimeError(f"paused, yet the consumer delivered offset {event.offset()} of {where}")
            log.warning("consumer error on %s: %s", event.topic(), event.error())

    def release(self) -> None:
        """The message in hand is done with: resume the partitions."""
        if self.paused:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False
            self.paused_metric.dec()
        self.held = None


class ConsumeLoop(Generic[T]):
    """Consume ``topic`` in consumer group ``group``, decode each value and hand it to ``handler``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        group: str,
        decode: Callable[[bytes], T],
        handler: Callable[[T, Message], None],
        fence: Fence | None = None,
        tombstone: bytes | None = None,
        **consumer_overrides,
    ):
        self.kafka = kafka
        self.topic = topic
        self.group = group
        self.decode = decode
        self.handler = handler
        self.fence = fence
        self.tombstone = tombstone  # what a message without a value is decoded from; None: it is dead-lettered
        self.dead_letter_topic = dead_letter_topic(topic, kafka)
        self._consumer_config = consumer_config(kafka, group, **consumer_overrides)
        self.ready = threading.Event()  # set once partitions are assigned

    def run(self, stop: threading.Event) -> None:
        """Process messages until ``stop`` is set; finish the one in hand, commit, close."""
        consumer = Consumer(self._consumer_config)
        publisher = Publisher(self.kafka)
        incremental = "cooperative" in str(self._consumer_config["partition.assignment.strategy"])
        paused_metric = CONSUMERS_PAUSED.labels(group=self.group, topic=self.topic)
        lag = ConsumerLag(consumer, self.group, self.topic)
        partitions = _Partitions(consumer, incremental, self.ready, paused_metric, lag)
        consumer.subscribe([self.topic], on_assign=partitions.on_assign, on_revoke=partitions.on_revoke)
        log.info("consuming %s as group %s", self.topic, self._consumer_config["group.id"])
        try:
            while not stop.is_set():
                msg = consumer.poll(POLL_S)
                lag.update()
                if msg is None:
                    continue
                if msg.error():
                    log.warning("consumer error on %s: %s", self.topic, msg.error())
                    continue
                partitions.hold(msg)
                try:
                    self._fenced(msg, publisher, partitions, stop)
                except _Interrupted:
                    break
                except _Revoked:
                    log.warning(
                        "%s was revoked while offset %d waited for a retry: left uncommitted to its new owner",
                        _name(msg.topic(), msg.partition()),
                        msg.offset(),
                    )
                    continue
                finally:
                    partitions.release()
                if not self._commit(consumer, msg):
                    continue
                lag.committed(msg)
                if self.fence is not None:
                    self._fence_call(self.fence.clear, msg)
        finally:
            lag.close()
            consumer.close()  # leaves the group at once, so a rebalance need not wait for a timeout
            publisher.close()
            log.info("stopped consuming %s", self.topic)

    def _commit(self, consumer: Consumer, msg: Message) -> bool:
        """Commit ``msg``'s offset; False when the group rebalanced meanwhile and refused it."""
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in REBALANCED:
                raise
            log.warning(
                "the group rebalanced while offset %d of %s was handled (%s): left uncommitted to the partition's "
                "owner",
                msg.offset(),
                _name(msg.topic(), msg.partition()),
                exc.args[0].name(),
            )
            if self.fence is not None:  # handled to the end: not a crash
                self._fence_call(self.fence.release, msg)
            return False
        return True

    def _fenced(self, msg: Message, publisher: Publisher, partitions: _Partitions, stop: threading.Event) -> None:
        """``_process`` the message, unless the fence counts it as one that killed the process before."""
        if self.fence is None:
            self._process(msg, publisher, partitions, stop)
            return
        attempts = self._begin(msg, partitions, stop)
        if attempts >= self.kafka.poison_attempts:
            reason = (
                f"poison: its handling began {attempts - 1} time(s) and never finished (the process died: "
                "out of memory, killed?); not handled again"
            )
            self._dead_letter(msg, publisher, reason)
            return
        try:
            self._process(msg, publisher, partitions, stop)
        except (_Interrupted, _Revoked):
            self._fence_call(self.fence.release, msg)  # neither a clean shutdown nor a rebalance is a crash
            raise

    def _begin(self, msg: Message, partitions: _Partitions, stop: threading.Event) -> int:
        """The fence's count for ``msg``; while its database is down, wait (the message is not at fault)."""
        assert self.fence is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.fence.begin(*self._fence_key(msg))
            except DependencyUnavailable as exc:
                delay = backoff_delay(attempt, self.kafka.retry_backoff_s, self.kafka.retry_backoff_max_s)
                log.warning("poison fence unavailable (%s); retrying in %.2f s", exc, delay)
                partitions.wait(delay, stop)

    def _fence_call(self, call: Callable[[str, str, int, int], None], msg: Message) -> None:
        # Best effort: a stale count is cleared with the partition's next commit.
        try:
            call(*self._fence_key(msg))
        except DependencyUnavailable as exc:
            log.warning("poison fence unavailable: %s", exc)

    def _fence_key(self, msg: Message) -> tuple[str, str, int, int]:
        return str(self._consumer_config["group.id"]), self.topic, int(msg.partition() or 0), int(msg.offset() or 0)

    def _process(self, msg: Message, publisher: Publisher, partitions: _Partitions, stop: threading.Event) -> None:
        raw = msg.value()
        if raw is None:
            if self.tombstone is None:
                self._dead_letter(msg, publisher, "undecodable message: it has no value (a tombstone)")
                return
            raw = self.tombstone
        try:
            value = self.decode(raw)
        except Exception as exc:
            self._dead_letter(msg, publisher, f"undecodable message: {exc.__class__.__name__}: {exc}")
            return
        frame_id = _frame_id(msg, value)
        attempt = 0
        with frame_context(frame_id):
            while True:
                attempt += 1
                started = time.perf_counter()
                try:
                    self.handler(value, msg)
                except (PoisonMessage, PublishRefused) as exc:
                    self._dead_letter(msg, publisher, f"rejected: {exc}")
                    return
                except Exception as exc:
                    if attempt > self.kafka.max_retries and not isinstance(exc, DependencyUnavailable):
                        reason = f"failed after {attempt} attempts: {exc.__class__.__name__}: {exc}"
                        self._dead_letter(msg, publisher, reason)
                        return
                    delay = backoff_delay(attempt, self.kafka.retry_backoff_s, self.kafka.retry_backoff_max_s)
                    MESSAGES.labels(topic=self.topic, outcome="retried").inc()
                    log.warning(
                        "attempt %d failed (%s: %s); retrying in %.2f s", attempt, exc.__class__.__name__, exc, delay
                    )
                    partitions.wait(delay, stop)
                    continue
                HANDLE_SECONDS.labels(topic=self.topic).observe(time.perf_counter() - started)
                MESSAGES.labels(topic=self.topic, outcome="ok").inc()
                return

    def _dead_letter(self, msg: Message, publisher: Publisher, reason: str) -> None:
        headers: Headers = message_headers(msg) + [
            ("dlq.reason", reason.encode()),
            ("dlq.topic", str(msg.topic()).encode()),
            ("dlq.partition", str(msg.partition()).encode()),
            ("dlq.offset", str(msg.offset()).encode()),
            ("dlq.group", str(self._consumer_config["group.id"]).encode()),
            ("dlq.failed_at", clock.now().isoformat().encode()),
        ]
        # The dead letter must be durable before the offset is committed, or the message is lost.
        try:
            publisher.publish(self.dead_letter_topic, msg.key(), msg.value(), headers)
        except PublishRefused as exc:
            # Its value cannot be written (too large with the headers): the letter points at it instead.
            headers.append(("dlq.value_dropped", str(exc).encode()))
            publisher.publish(self.dead_letter_topic, msg.key(), None, headers)
        MESSAGES.labels(topic=self.topic, outcome="dead_lettered").inc()
        log.error("sent to %s: %s", self.dead_letter_topic, reason)


def message_headers(msg: Message) -> Headers:
    """The message's headers as (name, value) pairs."""
    return [(str(header[0]), header[1] if isinstance(header[1], bytes) else None) for header in msg.headers() or []]


def _name(topic: str | None, partition: int | None) -> str:
    """``topic [partition]``, as librdkafka writes it."""
    return f"{topic} [{partition}]"


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(_name(p.topic, p.partition) for p in partitions)


def _frame_id(msg: Message, value: object) -> str | None:
    for key, header in message_headers(msg):
        if key == "frame_id" and header is not None:
            return header.decode(errors="replace")
    frame_id = getattr(value, "frame_id", None)
    return str(frame_id) if frame_id else None
