"""run_service in a real process: SIGTERM drains in-flight work; a dead loop or a taken port stops it."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffqc.infra.services import grpc_is_serving, grpc_settings_from
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.runtime.startup import service_main
from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings, Settings
from diffqc.v1 import scoring_pb2_grpc
from tests.helpers.certs import make_pki
from tests.helpers.scoring_server import score_request
from tests.helpers.slow_scoring_service import SERVICE_NAME, SLOW_SCORE_S

SCRIPT = Path(__file__).parents[1] / "helpers" / "slow_scoring_service.py"
GRACE_S = 6.0


class ServiceProcess:
    """The service script as a child process, its JSON log lines collected as they arrive."""

    def __init__(self, mode: str = "ok", grpc_port: int = 0, env: dict[str, str] | None = None):
        env = {
            **os.environ,
            "DIFFQC_SERVICE_GRPC_PORT": str(grpc_port),
            "DIFFQC_SERVICE_METRICS_PORT": "0",
            "DIFFQC_SERVICE_SHUTDOWN_GRACE_S": str(GRACE_S),
            "DIFFQC_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        env.pop("DIFFQC_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[dict] = []
        self._eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"message": raw.rstrip(), "not_json": True}
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    pytest.fail(f"no such log line within {timeout_s} s; the log:\n{self.log}")
                self._changed.wait(remaining)

    def message_index(self, text: str) -> int:
        return next(i for i, line in enumerate(self.lines) if line["message"].startswith(text))

    @property
    def log(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def service_process():
    started: list[ServiceProcess] = []

    def start(*args, **kwargs) -> ServiceProcess:
        started.append(ServiceProcess(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.close()


def test_sigterm_finishes_the_in_flight_call_refuses_new_ones_and_exits_0(service_process):
    service = service_process()
    port = service.wait_for(lambda line: "grpc_port" in line)["grpc_port"]
    service.wait_for(lambda line: line["message"].startswith("slow-scoring ready"))
    assert all(line["service"] == "slow-scoring" for line in service.lines), service.log

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = scoring_pb2_grpc.ScoringServiceStub(channel).Score.future(
            score_request("frame-in-flight", 0.8), timeout=30
        )
        service.wait_for(lambda line: line["message"] == "scoring" and line["frame_id"] == "frame-in-flight")

        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        service.wait_for(lambda line: line["message"].startswith("gRPC refusing new calls"))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as late, pytest.raises(grpc.RpcError) as refused:
            scoring_pb2_grpc.ScoringServiceStub(late).Score(score_request("frame-late"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not in_flight.done(), "the in-flight call must still be running when the new call is refused"

        verdict = in_flight.result(timeout=GRACE_S).verdict  # completes successfully during the drain
        assert verdict.frame.frame_id == "frame-in-flight" and verdict.score == pytest.approx(0.8)

    assert service.proc.wait(GRACE_S) == 0, service.log
    assert time.monotonic() - signalled < GRACE_S
    stopped = service.wait_for(lambda line: line["message"] == "stopped")
    assert stopped["exit_code"] == 0
    assert not any(line.get("not_json") for line in service.lines), service.log
    assert [line["frame_id"] for line in service.lines if line["message"] == "scoring"] == ["frame-in-flight"]
    assert service.wait_for(lambda line: line["message"] == "scored")["frame_id"] == "frame-in-flight"
    steps = ("shutting down (SIGTERM)", "gRPC health NOT_SERVING", "scored", "gRPC server stopped", "stopped")
    order = [service.message_index(step) for step in steps]
    assert order == sorted(order), service.log
    assert service.message_index("loop drained") < service.message_index("stopped")
    assert SLOW_SCORE_S < GRACE_S


def test_a_consume_loop_that_dies_stops_the_service_with_exit_code_1(service_process):
    service = service_process("failing-loop")
    assert service.proc.wait(20) == 1, service.log
    failure = service.wait_for(lambda line: line["message"].startswith("consume loop test.ticks failed"))
    assert "broker connection lost" in failure["exc_info"]
    assert service.wait_for(lambda line: line["message"] == "stopped")["exit_code"] == 1


def test_a_taken_grpc_port_fails_the_start_with_a_clear_message(service_process):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = service_process(grpc_port=port)
        assert service.proc.wait(20) == 1, service.log
    error = service.wait_for(lambda line: line.get("level") == "CRITICAL")  # gRPC C-core adds a plain line
    assert f"127.0.0.1:{port}" in error["message"] and "cannot start slow-scoring" in error["message"]


def test_grpc_serves_mutual_tls_when_the_settings_name_certificates(service_process, tmp_path):
    pki = make_pki(tmp_path)
    env = {
        "DIFFQC_GRPC_TLS_CERT_FILE": str(pki.server_cert),
        "DIFFQC_GRPC_TLS_KEY_FILE": str(pki.server_key),
        "DIFFQC_GRPC_TLS_CA_FILE": str(pki.ca_cert),
        "DIFFQC_GRPC_TLS_CLIENT_AUTH": "true",
    }
    service = service_process(env=env)
    serving = service.wait_for(lambda line: "grpc_port" in line)
    assert serving["grpc_security"] == "mutual TLS", service.log
    address = f"127.0.0.1:{serving['grpc_port']}"
    # The probe of diffqc.infra.services asks with the settings the service runs with (its own certificate).
    assert grpc_is_serving(address, timeout_s=5, grpc_settings=grpc_settings_from(env))
    assert not grpc_is_serving(address)  # plaintext
    client = GrpcSettings(tls_ca_file=pki.ca_cert, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key)
    with channel(address, client) as tls:
        verdict = scoring_pb2_grpc.ScoringServiceStub(tls).Score(score_request("f-tls", 0.9), timeout=10).verdict
    assert verdict.frame.frame_id == "f-tls"
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(GRACE_S) == 0, service.log


def test_unusable_tls_settings_stop_a_service_at_start_with_exit_code_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DIFFQC_GRPC_TLS_CERT_FILE", str(tmp_path / "missing.crt"))
    monkeypatch.setenv("DIFFQC_GRPC_TLS_KEY_FILE", str(tmp_path / "missing.key"))
    monkeypatch.delenv("DIFFQC_CONFIG", raising=False)

    def start(settings: Settings) -> int:
        GrpcServer("tls-start", lambda _server: None, [], grpc_settings=settings.grpc)
        return 0

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert service_main("tls-start", start, argv=[]) == 2
    finally:  # service_main configured JSON logging for the whole process
        root.handlers[:] = handlers
        root.setLevel(level)
    logged = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert logged["level"] == "CRITICAL"
    assert f"DIFFQC_GRPC_TLS_CERT_FILE: {tmp_path / 'missing.crt'} does not exist" in logged["message"]
