"""End-to-end round trips that prove each local server works (used by ``diffqc demo`` and tests)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from sqlalchemy import text

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.infra.timeseries import export_series
from diffqc.settings import KafkaSettings
from diffqc.store.engine import make_engine


def kafka_roundtrip(bootstrap: str, timeout_s: float = 30.0) -> float:
    """Produce one message and read it back in a fresh consumer group; returns seconds taken."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000)
    topic, token = f"diffqc.check.{uuid.uuid4().hex[:8]}", uuid.uuid4().hex.encode()
    started = time.monotonic()
    ensure_topics(kafka, [topic])
    producer = Producer(producer_config(kafka))
    producer.produce(topic, key=b"check", value=token)
    if producer.flush(timeout_s) != 0:
        raise RuntimeError(f"broker {bootstrap} did not acknowledge a message")
    consumer = Consumer(consumer_config(kafka, f"check-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    try:
        while time.monotonic() - started < timeout_s:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.value() == token:
                return time.monotonic() - started
    finally:
        consumer.close()
    raise RuntimeError(f"message produced to {bootstrap} was not consumed within {timeout_s:g} s")


def timeseries_roundtrip(url: str, token: str = "unused", org: str = "diffqc", bucket: str = "quality") -> float:
    """Write a point with influxdb-client and read it back; returns seconds taken."""
    started = time.monotonic()
    check_id = uuid.uuid4().hex[:8]
    with InfluxDBClient(url=url, token=token, org=org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket, record=Point("diffqc_check").tag("check", check_id).field("value", 1.0)
        )
    deadline = started + 15
    while time.monotonic() < deadline:
        if any(s["metric"].get("check") == check_id for s in export_series(url, "diffqc_check", "value")):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"a point written to {url} could not be read back")


def database_roundtrip(url: str) -> float:
    started = time.monotonic()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 42")).scalar_one() != 42:
                raise RuntimeError(f"database {url} answered wrongly")
    finally:
        engine.dispose()
    return time.monotonic() - started
