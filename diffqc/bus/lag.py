"""Consumer lag of one consume loop: ``diffqc_consumer_lag{group,topic,partition}``.

Lag is what Kafka's own tools (kafka-consumer-groups, KEDA) call it: the partition's high watermark
minus the group's committed offset, so the message in hand counts until it is committed. The loop
reports each commit; a partition without one since it was assigned asks the broker for its committed
offset once (a group that never committed starts at the log's start, auto.offset.reset=earliest).
The high watermark is the one librdkafka cached from its last fetch response, so an update costs no
request; while the loop's partitions are paused (a retry wait) nothing is fetched, and the lag keeps
its last value until they resume (diffqc_consumer_paused tells that state). Asking the broker instead
would need ListOffsets(latest), which the local broker (tansu 0.6) answers wrongly. Series of
partitions the loop loses at a rebalance, or when it stops, are removed: their new owner reports them
(a loop of the same process included, ``stream_workers``, at its next update).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from diffqc.runtime.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)
UPDATE_EVERY_S = 5.0  # a scrape every 15-30 s needs no fresher value
COMMITTED_TIMEOUT_S = 1.0  # the consume loop waits this long at most for a committed offset


class ConsumerLag:
    """Keeps the lag gauge of ``topic``'s partitions that ``consumer`` holds in ``group``; call ``update``
    after each poll (it does its work at most every ``UPDATE_EVERY_S``) and from the rebalance callbacks."""

    def __init__(self, consumer: Consumer, group: str, topic: str):
        self.consumer, self.group, self.topic = consumer, group, topic
        # partition -> committed offset; None: the group never committed it (it starts at the log's start)
        self._committed: dict[int, int | None] = {}
        self._reported: set[int] = set()
        self._next_update = 0.0

    def committed(self, msg: Message) -> None:
        """The loop committed ``msg``."""
        self._committed[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """What the loop committed before it lost a partition is stale once it is assigned again."""
        for tp in partitions:
            self._committed.pop(tp.partition, None)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._forget(tp.partition)

    def close(self) -> None:
        for partition in list(self._reported | set(self._committed)):
            self._forget(partition)

    def update(self) -> None:
        now = time.monotonic()
        if now < self._next_update:
            return
        self._next_update = now + UPDATE_EVERY_S
        assignment = [tp for tp in self.consumer.assignment() if tp.topic == self.topic]
        self._fetch_committed([tp for tp in assignment if tp.partition not in self._committed])
        for tp in assignment:
            if tp.partition not in self._committed:
                continue  # the broker did not answer: next time
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # nothing fetched from the partition yet
            start = self._committed[tp.partition]
            lag = max(0, high - (low if start is None else start))
            CONSUMER_LAG.labels(group=self.group, topic=self.topic, partition=str(tp.partition)).set(lag)
            self._reported.add(tp.partition)

    def _fetch_committed(self, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        try:
            answered = self.consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            log.debug("committed offsets of %s unavailable for its lag: %s", self.topic, exc)
            return
        for tp in answered:
            if tp.error is None:
                self._committed[tp.partition] = tp.offset if tp.offset >= 0 else None

    def _forget(self, partition: int) -> None:
        self._committed.pop(partition, None)
        if partition in self._reported:
            self._reported.discard(partition)
            CONSUMER_LAG.remove(self.group, self.topic, str(partition))
