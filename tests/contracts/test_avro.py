"""quality.alert in Avro through the real broker, the real AvroSerializer/AvroDeserializer and a registry
reachable over HTTP; schema evolution under BACKWARD compatibility."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema

from diffqc.alerts import alert_record
from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.contracts.avro import (
    ALERT_SCHEMA,
    AvroTopic,
    SchemaRejected,
    UndecodableValue,
    load_schema,
    registry_client,
)
from diffqc.infra.ports import free_port
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import RegistrySettings
from diffqc.v1.scoring_pb2 import VERDICT_NOT_INSPECTED
from tests.helpers.verdicts import DECIDED, LINKS, verdict

# The schema before NOT_INSPECTED alerts (status, not_inspected_reason): what an MES not yet updated reads with.
V1 = Path(__file__).parent / "quality_alert_v1.avsc"


@pytest.fixture
def client(schema_registry_url):
    return registry_client(RegistrySettings(url=schema_registry_url))


@pytest.fixture
def topic(kafka_settings) -> str:
    """A fresh topic per test, so its subject (<topic>-value) starts empty."""
    name = f"quality.alert.test-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_settings, [name], 2)
    return name


def produce(kafka, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(kafka))
    for key, value in items:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def consume(kafka, topic: str, count: int, timeout_s: float = 30.0) -> list:
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    messages = []
    try:
        for _ in range(int(timeout_s / 0.2)):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                messages.append(msg)
            if len(messages) == count:
                return messages
    finally:
        consumer.close()
    raise AssertionError(f"read {len(messages)} of {count} messages from {topic}")


def test_every_field_has_a_doc_and_the_schema_has_a_namespace():
    schema = json.loads(ALERT_SCHEMA.read_text())
    assert schema["namespace"] == "diffqc.quality"

    def fields(record):
        for f in record["fields"]:
            yield f
            for t in f["type"] if isinstance(f["type"], list) else [f["type"]]:
                inner = t.get("items", t) if isinstance(t, dict) else None
                if isinstance(inner, dict) and inner.get("type") == "record":
                    yield from fields(inner)

    undocumented = [f["name"] for f in fields(schema) if not f.get("doc")]
    assert undocumented == []


def test_alert_round_trip_through_the_broker(kafka_settings, client, topic):
    alerts = AvroTopic(client, topic, load_schema(ALERT_SCHEMA))
    schema_id = alerts.register()
    records = [alert_record(verdict(score=s, line=f"L{i}"), LINKS) for i, s in enumerate([1.1, 2.5, 1.3])]
    produce(kafka_settings, topic, [(r["line_id"].encode(), alerts.encode(r)) for r in records])

    messages = consume(kafka_settings, topic, len(records))
    # Confluent framing: magic byte 0, the registered schema id (big-endian), then the Avro body.
    assert {(m.value()[0], int.from_bytes(m.value()[1:5], "big")) for m in messages} == {(0, schema_id)}
    # The consumer side has its own client and cache, as another process would: it fetches the schema by id.
    reader = AvroTopic(registry_client(RegistrySettings(url=alerts.url)), topic, load_schema(ALERT_SCHEMA))
    decoded = {m.key(): reader.decode(m.value()) for m in messages}
    assert decoded == {r["line_id"].encode(): r for r in records}
    first = decoded[b"L0"]
    assert first["detected_at"] == DECIDED and first["severity"] == "MINOR" and first["lot"] == "LOT-7"
    assert first["regions"] == [
        {"bbox": {"x": 30, "y": 10, "width": 10, "height": 10}, "area_px": 20, "peak_score": 4.5}
    ]
    assert client.get_compatibility(alerts.subject) == "BACKWARD"


def test_the_not_inspected_status_is_backward_compatible_and_old_readers_read_it(kafka_settings, client, topic):
    old_schema = AvroTopic(client, topic, load_schema(V1))
    old_schema.register()
    current = AvroTopic(client, topic, load_schema(ALERT_SCHEMA))
    assert current.register() != old_schema.register()  # accepted under BACKWARD as the subject's second version
    assert client.get_versions(current.subject) == [1, 2]

    not_inspected = verdict(defect=False)
    not_inspected.verdict, not_inspected.not_inspected_reason = VERDICT_NOT_INSPECTED, "dead-lettered at inference: x"
    new = alert_record(not_inspected, LINKS)
    old = {k: v for k, v in alert_record(verdict(), LINKS).items() if k not in ("status", "not_inspected_reason")}
    produce(kafka_settings, topic, [(b"L1", old_schema.encode(old)), (b"L1", current.encode(new))])
    first, second = (m.value() for m in consume(kafka_settings, topic, 2))

    # An MES still on the old schema reads the new alert: a MAJOR alert about the part, without the new fields.
    assert old_schema.decode(second) == {k: v for k, v in new.items() if k not in ("status", "not_inspected_reason")}
    assert (new["status"], new["severity"], new["not_inspected_reason"]) == (
        "NOT_INSPECTED",
        "MAJOR",
        "dead-lettered at inference: x",
    )
    # The current schema reads an old alert as the DEFECT it was.
    assert current.decode(first) == {**old, "status": "DEFECT", "not_inspected_reason": None}


def test_v2_with_an_optional_field_is_backward_compatible_and_v1_consumers_read_it(kafka_settings, client, topic):
    v1 = AvroTopic(client, topic, load_schema(ALERT_SCHEMA))
    v1.register()
    schema = json.loads(ALERT_SCHEMA.read_text())
    schema["fields"].append(
        {"name": "defect_class", "type": ["null", "string"], "default": None, "doc": "an added optional field"}
    )
    v2 = AvroTopic(client, topic, Schema(json.dumps(schema), "AVRO"))
    assert v2.register() != v1.register()  # v2 is a new version; re-registering v1 is a no-op
    assert client.get_versions(v1.subject) == [1, 2]

    old, new = alert_record(verdict(), LINKS), {**alert_record(verdict(), LINKS), "defect_class": "solder_bridge"}
    produce(kafka_settings, topic, [(b"L1", v1.encode(old)), (b"L1", v2.encode(new))])
    first, second = (m.value() for m in consume(kafka_settings, topic, 2))

    # A consumer still on v1 reads the v2 message: the new field is dropped, everything else intact.
    assert v1.decode(second) == {k: v for k, v in new.items() if k != "defect_class"}
    # A consumer on v2 reads the old message with the new field's default.
    assert v2.decode(first) == {**old, "defect_class": None}


def test_an_incompatible_change_is_refused_with_the_reason(client, topic):
    AvroTopic(client, topic, load_schema(ALERT_SCHEMA)).register()
    schema = json.loads(ALERT_SCHEMA.read_text())
    schema["fields"].append({"name": "operator_id", "type": "string", "doc": "required, no default"})
    with pytest.raises(SchemaRejected) as refused:
        AvroTopic(client, topic, Schema(json.dumps(schema), "AVRO")).register()
    message = str(refused.value)
    assert "HTTP 409" in message and "incompatible" in message and "BACKWARD" in message
    assert "operator_id" in message and "reader_field_missing_default_value" in message
    assert client.get_versions(f"{topic}-value") == [1]


def test_bad_values_and_a_missing_registry(client, topic):
    alerts = AvroTopic(client, topic, load_schema(ALERT_SCHEMA))
    alerts.register()
    with pytest.raises(UndecodableValue, match="magic byte|framing"):
        alerts.decode(b"\x07not avro at all")
    with pytest.raises(UndecodableValue, match="Schema not found"):
        alerts.decode(b"\x00" + (10**6).to_bytes(4, "big") + b"\x02ab")
    with pytest.raises(UndecodableValue, match="empty"):
        alerts.decode(b"")
    down = AvroTopic(
        registry_client(RegistrySettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1)),
        topic,
        load_schema(ALERT_SCHEMA),
    )
    with pytest.raises(DependencyUnavailable, match="schema registry at http://127.0.0.1:.* unreachable"):
        down.encode(alert_record(verdict(), LINKS))
    with pytest.raises(ValueError, match="not a valid Avro schema"):
        load_schema(Path(__file__).parent / "test_avro.py")
