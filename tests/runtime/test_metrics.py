"""The /metrics endpoint over real HTTP, and gRPC calls counted by the interceptor under the grpc-ecosystem
names (grpc_server_*), unary and streaming, over real channels."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from diffqc.runtime.grpc_server import GrpcServer
from diffqc.runtime.metrics import HANDLE_SECONDS, MESSAGES, start_metrics_server
from diffqc.v1 import scoring_pb2_grpc
from tests.helpers.scoring_server import score_request

SCORING = "diffqc.v1.ScoringService"
ECHO = "test.Echo"  # a streaming service of raw bytes, served below


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(name: str, grpc_type: str, service: str, method: str, **labels: str) -> float:
    labels = {"grpc_type": grpc_type, "grpc_service": service, "grpc_method": method, **labels}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _snapshot(grpc_type: str, service: str, method: str, *codes: str) -> dict[str, float]:
    """Every grpc_server_* value of one method (handled: by each of ``codes``)."""
    values = {
        name: _value(name, grpc_type, service, method)
        for name in (
            "grpc_server_started_total",
            "grpc_server_msg_received_total",
            "grpc_server_msg_sent_total",
            "grpc_server_handling_seconds_count",
        )
    }
    for code in codes:
        values[code] = _value("grpc_server_handled_total", grpc_type, service, method, grpc_code=code)
    return values


def _increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


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


def test_unary_calls_are_counted_by_service_method_and_code_but_health_probes_are_not(server, channel):
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    before = _snapshot("unary", SCORING, "Score", "OK", "INVALID_ARGUMENT")

    stub.Score(score_request(pixel=0.1), timeout=5)
    stub.Score(score_request(pixel=0.2), timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(score_request(pixel=-1.0), timeout=5)  # the servicer aborts with INVALID_ARGUMENT
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

    assert _increase(before, _snapshot("unary", SCORING, "Score", "OK", "INVALID_ARGUMENT")) == {
        "grpc_server_started_total": 3,
        "grpc_server_msg_received_total": 3,
        "grpc_server_msg_sent_total": 2,  # the refused call answered no message
        "grpc_server_handling_seconds_count": 3,
        "OK": 2,
        "INVALID_ARGUMENT": 1,
    }
    assert _value("grpc_server_started_total", "unary", "grpc.health.v1.Health", "Check") == 0


def _upper(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """bidi: each request upper-cased; a stream that begins with b"full" is refused, as ingestion refuses one
    beyond its limit."""
    for request in requests:
        if request == b"full":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no room")
        yield request.upper()


def _count(request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
    """server stream: 0, 1, 2 ... until the client cancels."""
    n = 0
    while True:
        yield str(n).encode()
        n += 1


@pytest.fixture
def echo_channel() -> Iterator[grpc.Channel]:
    handlers = {
        "Upper": grpc.stream_stream_rpc_method_handler(_upper),
        "Count": grpc.unary_stream_rpc_method_handler(_count),
    }

    def register(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO, handlers),))

    server = GrpcServer("test-echo", register, [ECHO], port=0, workers=4)
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            yield channel
    finally:
        server.stop(grace=0)


def test_a_bidi_stream_counts_each_message_and_ends_with_its_status(echo_channel):
    upper = echo_channel.stream_stream(f"/{ECHO}/Upper")
    before = _snapshot("bidi_stream", ECHO, "Upper", "OK", "RESOURCE_EXHAUSTED")

    assert list(upper(iter([b"a", b"b", b"c"]), timeout=5)) == [b"A", b"B", b"C"]
    with pytest.raises(grpc.RpcError) as err:
        list(upper(iter([b"full"]), timeout=5))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    assert _increase(before, _snapshot("bidi_stream", ECHO, "Upper", "OK", "RESOURCE_EXHAUSTED")) == {
        "grpc_server_started_total": 2,
        "grpc_server_msg_received_total": 4,
        "grpc_server_msg_sent_total": 3,
        "grpc_server_handling_seconds_count": 2,  # each timed to its end
        "OK": 1,
        "RESOURCE_EXHAUSTED": 1,
    }


def test_a_server_stream_the_client_cancels_ends_cancelled(echo_channel):
    before = _snapshot("server_stream", ECHO, "Count", "CANCELLED")
    call = echo_channel.unary_stream(f"/{ECHO}/Count")(b"", timeout=30)
    assert [next(call), next(call)] == [b"0", b"1"]
    call.cancel()

    deadline = time.monotonic() + 30  # the server learns of the cancel asynchronously
    while _increase(before, _snapshot("server_stream", ECHO, "Count", "CANCELLED"))["CANCELLED"] < 1:
        assert time.monotonic() < deadline, "the cancelled stream was never counted as handled"
        time.sleep(0.05)
    counted = _increase(before, _snapshot("server_stream", ECHO, "Count", "CANCELLED"))
    assert counted["grpc_server_started_total"] == counted["grpc_server_handling_seconds_count"] == 1
    assert counted["grpc_server_msg_received_total"] == 1 and counted["grpc_server_msg_sent_total"] >= 2
