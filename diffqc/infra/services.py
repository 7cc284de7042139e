"""diffqc's own services as local processes (``python -m services.<name>``), ready when their
standard gRPC health check answers SERVING (the gateway: when its HTTP server answers /health).
Used by the demo and the end-to-end tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffqc.infra.process import ServerProcess
from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GRPC_PREFIX = "DIFFQC_GRPC_"


def grpc_settings_from(env: Mapping[str, str]) -> GrpcSettings:
    """The gRPC TLS settings that a process with environment ``env`` runs with (its DIFFQC_GRPC_* variables)."""
    return GrpcSettings.model_validate(
        {name[len(GRPC_PREFIX) :].lower(): value for name, value in env.items() if name.startswith(GRPC_PREFIX)}
    )


def grpc_is_serving(address: str, timeout_s: float = 1.0, grpc_settings: GrpcSettings | None = None) -> bool:
    """The standard health check answers SERVING, over TLS when ``grpc_settings`` say so."""
    try:
        with channel(address, grpc_settings or GrpcSettings()) as client:
            response = health_pb2_grpc.HealthStub(client).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            return response.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def service_process(
    name: str, grpc_port: int, env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0
) -> ServerProcess:
    """A service process configured by ``env`` (DIFFQC_* variables) on ``grpc_port``; ready once its health
    check, asked with the service's own gRPC TLS settings, answers SERVING."""
    environment = {
        **os.environ,
        **env,
        "DIFFQC_SERVICE_GRPC_PORT": str(grpc_port),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    grpc_settings = grpc_settings_from(environment)
    return ServerProcess(
        name=f"service {name}",
        argv=[sys.executable, "-m", f"services.{name}"],
        log_path=log_path,
        env=environment,
        ready=lambda: grpc_is_serving(f"127.0.0.1:{grpc_port}", grpc_settings=grpc_settings),
        ready_timeout_s=ready_timeout_s,
    )


def gateway_process(port: int, env: dict[str, str], log_path: Path, ready_timeout_s: float = 60.0) -> ServerProcess:
    """``python -m services.gateway`` configured by ``env`` on ``port``; ready once its HTTP server answers."""
    environment = {
        **os.environ,
        **env,
        "DIFFQC_GATEWAY_HTTP_PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    host = environment.get("DIFFQC_GATEWAY_HTTP_HOST", "127.0.0.1")
    probe = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/health"

    def ready() -> bool:
        try:  # 503 while ingestion is down: the HTTP server answers all the same
            return httpx.get(probe, timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    return ServerProcess(
        name="gateway",
        argv=[sys.executable, "-m", "services.gateway"],
        log_path=log_path,
        env=environment,
        ready=ready,
        ready_timeout_s=ready_timeout_s,
    )
