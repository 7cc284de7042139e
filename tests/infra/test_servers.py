"""The embedded servers, exercised through real clients."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.infra.timeseries import export_series
from diffqc.store.engine import make_engine


def _drain(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list:
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            messages.append(msg)
    return messages


def test_consumer_group_reads_what_a_producer_wrote_and_its_commits_survive(kafka_settings):
    topic = f"test.frames.{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_settings, [topic], partitions=3)
    producer = Producer(producer_config(kafka_settings))
    sent = {(f"line-{i % 4}".encode(), f"frame-{i}".encode()) for i in range(24)}
    for key, value in sorted(sent):
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0

    group = f"group-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(consumer_config(kafka_settings, group))
    consumer.subscribe([topic])
    received = _drain(consumer, len(sent))
    assert {(m.key(), m.value()) for m in received} == sent
    # One line's frames share a partition (key = line), so each line is read in order.
    for line in {k for k, _ in sent}:
        assert len({m.partition() for m in received if m.key() == line}) == 1
    for msg in received:
        consumer.store_offsets(msg)
    consumer.commit(asynchronous=False)
    consumer.close()

    producer.produce(topic, key=b"line-0", value=b"after-restart")
    producer.flush(10)
    restarted = Consumer(consumer_config(kafka_settings, group))
    restarted.subscribe([topic])
    assert [m.value() for m in _drain(restarted, 1)] == [b"after-restart"]
    restarted.close()


def test_postgres_round_trip(postgres_url):
    engine = make_engine(postgres_url)
    assert engine.dialect.name == "postgresql"
    metadata = MetaData()
    frames = Table("frames", metadata, Column("id", Integer, primary_key=True), Column("line", String(32)))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(frames), [{"id": 1, "line": "L1"}, {"id": 2, "line": "L2"}])
    with engine.connect() as conn:
        assert conn.execute(select(frames.c.line).order_by(frames.c.id)).scalars().all() == ["L1", "L2"]
    engine.dispose()


def test_points_written_with_influxdb_client_are_read_back(timeseries_url):
    line = f"L{uuid.uuid4().hex[:6]}"
    with InfluxDBClient(url=timeseries_url, token="test", org="diffqc") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            "quality",
            record=[
                Point("anomaly_score").tag("line", line).field("score", score).time(1_700_000_000_000 + i, "ms")
                for i, score in enumerate([0.1, 0.2, 0.9])
            ],
        )
    deadline = time.monotonic() + 10
    series = []
    while not series and time.monotonic() < deadline:
        series = [s for s in export_series(timeseries_url, "anomaly_score", "score") if s["metric"]["line"] == line]
        time.sleep(0.1)
    assert len(series) == 1
    assert series[0]["values"] == [0.1, 0.2, 0.9]
    assert series[0]["timestamps"] == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]
