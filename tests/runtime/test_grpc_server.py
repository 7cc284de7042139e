"""GrpcServer over real channels: health checking, reflection, bounded draining, bind errors."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from diffqc.runtime.grpc_server import GrpcBindError, GrpcServer
from diffqc.v1 import scoring_pb2_grpc
from tests.helpers.scoring_server import score_request, scoring_server
from tests.helpers.slow_scoring_service import SERVICE_NAME

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def test_health_check_reports_the_server_and_each_service_serving(channel):
    assert _check(channel) == SERVING
    assert _check(channel, SERVICE_NAME) == SERVING
    with pytest.raises(grpc.RpcError) as err:
        _check(channel, "diffqc.v1.NoSuchService")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_service_answers_and_binds_loopback_only(server, channel):
    response = scoring_pb2_grpc.ScoringServiceStub(channel).Score(score_request("f-7", 0.9), timeout=5)
    assert response.verdict.frame.frame_id == "f-7"
    assert response.verdict.score == pytest.approx(0.9)
    assert server.address.startswith("127.0.0.1:") and server.port > 0


def test_stop_turns_health_not_serving_for_watchers_and_does_not_wait_for_their_streams():
    server, _ = scoring_server()
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert next(watch).status == SERVING
        started = time.monotonic()
        stopper = threading.Thread(target=server.stop, args=(10.0,))
        stopper.start()
        assert next(watch).status == NOT_SERVING
        assert list(watch) == []  # the stream ends instead of holding the stop for the 10 s grace
        stopper.join(5)
        assert not stopper.is_alive() and time.monotonic() - started < 5
        with pytest.raises(grpc.RpcError) as err:
            _check(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_stop_waits_for_an_in_flight_call_within_the_grace():
    server, servicer = scoring_server(delay_s=1.0)
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        call = scoring_pb2_grpc.ScoringServiceStub(channel).Score.future(score_request("f-slow"), timeout=10)
        assert servicer.started.wait(5)
        started = time.monotonic()
        server.stop(grace=5.0)
        assert 0.5 < time.monotonic() - started < 4.5  # waited for the call, not for the whole grace
        assert call.result(timeout=1).verdict.frame.frame_id == "f-slow"


def test_stop_gives_up_on_a_call_that_outlasts_the_grace():
    server, servicer = scoring_server(delay_s=3.0)
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        call = scoring_pb2_grpc.ScoringServiceStub(channel).Score.future(score_request(), timeout=10)
        assert servicer.started.wait(5)
        started = time.monotonic()
        server.stop(grace=0.5)
        assert time.monotonic() - started < 2.0
        with pytest.raises(grpc.RpcError):
            call.result(timeout=5)


def test_reflection_lists_the_services_and_serves_their_descriptors(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    # The whole file set comes over the wire (imports included): a client can build requests from it.
    method = DescriptorPool(database).FindServiceByName(SERVICE_NAME).methods_by_name["Score"]
    assert method.input_type.full_name == "diffqc.v1.ScoreRequest"
    verdict = method.output_type.fields_by_name["verdict"]
    assert verdict.message_type.full_name == "diffqc.v1.InspectionVerdict"


def test_a_port_in_use_is_an_error_not_a_shared_port(server):
    with pytest.raises(GrpcBindError, match=str(server.port)):
        GrpcServer("second", lambda _server: None, [], port=server.port)
