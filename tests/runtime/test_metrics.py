"""The /metrics endpoint over real HTTP, and gRPC calls counted by the interceptor."""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from diffqc.runtime.metrics import HANDLE_SECONDS, MESSAGES, start_metrics_server
from diffqc.v1 import scoring_pb2_grpc
from tests.helpers.scoring_server import score_request

SCORE = "/diffqc.v1.ScoringService/Score"


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _calls(method: str, code: str) -> float:
    labels = {"method": method, "code": code}
    return REGISTRY.get_sample_value("diffqc_grpc_server_calls_total", labels) or 0.0


def _timed_calls(method: str) -> float:
    return REGISTRY.get_sample_value("diffqc_grpc_server_call_seconds_count", {"method": method}) or 0.0


def test_metrics_endpoint_serves_the_shared_diffqc_metrics():
    port = start_metrics_server(0)
    assert port > 0
    MESSAGES.labels(topic="test.metrics", outcome="dead_lettered").inc(3)
    HANDLE_SECONDS.labels(topic="test.metrics").observe(0.2)

    samples = _scrape(port)
    dead_lettered = frozenset({("topic", "test.metrics"), ("outcome", "dead_lettered")})
    assert samples[("diffqc_messages_total", dead_lettered)] >= 3
    assert samples[("diffqc_message_handle_seconds_count", frozenset({("topic", "test.metrics")}))] >= 1
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)  # the standard collectors too


def test_interceptor_counts_calls_by_method_and_code_but_not_health_probes(server, channel):
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    ok, invalid = _calls(SCORE, "OK"), _calls(SCORE, "INVALID_ARGUMENT")
    timed = _timed_calls(SCORE)

    stub.Score(score_request(pixel=0.1), timeout=5)
    stub.Score(score_request(pixel=0.2), timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(score_request(pixel=-1.0), timeout=5)  # the servicer aborts with INVALID_ARGUMENT
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

    assert _calls(SCORE, "OK") == ok + 2
    assert _calls(SCORE, "INVALID_ARGUMENT") == invalid + 1
    assert _timed_calls(SCORE) == timed + 3
    assert _calls("/grpc.health.v1.Health/Check", "OK") == 0
