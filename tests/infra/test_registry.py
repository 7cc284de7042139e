"""The local schema registry (diffqc.infra.registry) through confluent-kafka's own client, over HTTP."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

V1 = {"type": "record", "name": "Part", "namespace": "test", "fields": [{"name": "id", "type": "string"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
REQUIRED = {**V1, "fields": [*V1["fields"], {"name": "weight_g", "type": "double"}]}


def avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


@pytest.fixture
def client(schema_registry_url):
    return SchemaRegistryClient({"url": schema_registry_url})


@pytest.fixture
def subject() -> str:
    return f"parts-{uuid.uuid4().hex[:8]}-value"


def test_register_look_up_and_fetch_by_id(client, subject):
    first = client.register_schema(subject, avro(V1))
    assert client.register_schema(subject, avro(V1)) == first  # registering again changes nothing
    second = client.register_schema(subject, avro(V2))
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id, json.loads(latest.schema.schema_str)) == (2, second, V2)
    assert json.loads(client.get_schema(first).schema_str) == V1
    assert client.lookup_schema(subject, avro(V1)).version == 1
    assert subject in client.get_subjects()
    # The same schema under another subject keeps its global id (as Confluent's registry does).
    assert client.register_schema(f"other-{subject}", avro(V1)) == first


def test_backward_compatibility_refuses_a_new_required_field(client, subject):
    assert client.set_compatibility(subject, "BACKWARD") == {"compatibility": "BACKWARD"}
    assert client.get_compatibility(subject) == "BACKWARD"
    client.register_schema(subject, avro(V1))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, avro(REQUIRED))
    assert refused.value.http_status_code == 409
    message = refused.value.error_message
    assert "incompatible" in message and "reader_field_missing_default_value" in message and "weight_g" in message
    assert client.get_versions(subject) == [1]  # nothing was registered

    client.set_compatibility(subject, "NONE")  # the operator's way out: the check then passes
    client.register_schema(subject, avro(REQUIRED))
    assert client.get_versions(subject) == [1, 2]


def test_forward_and_full_check_the_other_direction(client, subject):
    client.set_compatibility(subject, "FULL")
    client.register_schema(subject, avro(V2))
    # Dropping the optional field: v2 readers still read it (default), v1 data reads in v2: allowed.
    client.register_schema(subject, avro(V1))
    forward = f"fwd-{subject}"
    client.set_compatibility(forward, "FORWARD")
    client.register_schema(forward, avro(V1))
    with pytest.raises(SchemaRegistryError, match="incompatible"):  # old readers cannot skip-read a removed field
        client.register_schema(forward, avro({**V1, "fields": [{"name": "other", "type": "string"}]}))


def test_bad_requests_get_confluent_errors(client, subject, schema_registry_url):
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(subject, Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert invalid.value.http_status_code == 422 and invalid.value.error_code == 42201
    with pytest.raises(SchemaRegistryError) as unknown:
        client.get_schema(10**6)
    assert (unknown.value.http_status_code, unknown.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as no_subject:
        client.get_latest_version(f"missing-{subject}")
    assert no_subject.value.error_code == 40401
    with pytest.raises(SchemaRegistryError) as level:
        client.set_compatibility(subject, "SIDEWAYS")
    assert level.value.http_status_code == 422 and "SIDEWAYS" in level.value.error_message
    with pytest.raises(SchemaRegistryError) as proto:
        client.register_schema(subject, Schema('syntax = "proto3";', "PROTOBUF"))
    assert "AVRO only" in proto.value.error_message
    # The client's association probe must get a 404 so that it falls back to TopicNameStrategy.
    probe = httpx.get(f"{schema_registry_url}/associations/resources/-/quality.alert")
    assert probe.status_code == 404 and probe.json()["error_code"] == 404
