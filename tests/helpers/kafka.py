"""Helpers shared by the tests that read what services published to Kafka."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from diffqc.bus.config import consumer_config


def collect(kafka, topic, frame_ids: set[str], timeout_s=60.0, settle_s=2.0) -> dict[str, list]:
    """Every message of ``topic`` about ``frame_ids``; after the last one arrived, listen ``settle_s``
    longer so that a duplicate would be seen too."""
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    found: dict[str, list] = {}
    deadline, settled = time.monotonic() + timeout_s, None
    while time.monotonic() < (settled or deadline):
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            value = dict(msg.headers() or []).get("frame_id") or b""
            frame_id = value.decode() if isinstance(value, bytes) else value
            if frame_id in frame_ids:
                found.setdefault(frame_id, []).append(msg)
        if settled is None and set(found) == frame_ids:
            settled = time.monotonic() + settle_s
    consumer.close()
    return found
