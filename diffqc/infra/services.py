"""diffqc's own services as local processes (``python -m services.<name>``), ready when their
standard gRPC health check answers SERVING. Used by the demo and the end-to-end tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffqc.infra.process import ServerProcess

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def grpc_is_serving(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            return response.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def service_process(
    name: str, grpc_port: int, env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0
) -> ServerProcess:
    """A service process configured by ``env`` (DIFFQC_* variables) on ``grpc_port``."""
    environment = {
        **os.environ,
        **env,
        "DIFFQC_SERVICE_GRPC_PORT": str(grpc_port),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return ServerProcess(
        name=f"service {name}",
        argv=[sys.executable, "-m", f"services.{name}"],
        log_path=log_path,
        env=environment,
        ready=lambda: grpc_is_serving(f"127.0.0.1:{grpc_port}"),
        ready_timeout_s=ready_timeout_s,
    )
