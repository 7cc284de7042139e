"""The gRPC server every service runs: its servicers plus standard health checking, reflection and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from diffqc.runtime.metrics import MetricsInterceptor
from diffqc.security.tls import server_credentials
from diffqc.settings import GrpcSettings

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING


class GrpcBindError(RuntimeError):
    """The server could not listen on the requested address (port in use, bad host)."""


class _HealthServicer(health.HealthServicer):
    def end_watches(self) -> None:
        """End open Watch streams (status OK) once they have seen NOT_SERVING.

        A Watch stream never finishes by itself, so without this every watching client (gRPC
        client-side health checking, for one) would hold ``server.stop(grace)`` for the whole grace.
        grpcio-health-checking has no public API for it; if its internals change, watches simply
        run until the grace ends, as before.
        """
        lock, callbacks = getattr(self, "_lock", None), getattr(self, "_send_response_callbacks", None)
        if lock is None or callbacks is None:
            return
        with lock:
            pending = [send for by_service in callbacks.values() for send in by_service]
        for send in pending:
            send(None)  # None ends the stream


class GrpcServer:
    """A grpc.server on a thread pool with health, reflection and the metrics interceptor.

    ``register`` adds the service's servicers (``add_XServicer_to_server``); ``service_names`` are
    their full names (``diffqc.v1.ScoringService``), reported by health checking and reflection.
    Binds ``host:port`` at construction (port 0 picks a free port, see ``.port``), with TLS when
    ``grpc_settings`` names a certificate (diffqc.security.tls; a bad one is a SettingsError).
    """

    def __init__(
        self,
        service_name: str,
        register: Callable[[grpc.Server], None],
        service_names: Sequence[str],
        port: int = 0,
        workers: int = 8,
        host: str = "127.0.0.1",
        options: Sequence[tuple[str, Any]] = (),
        grpc_settings: GrpcSettings | None = None,
    ):
        self.service_name = service_name
        self.service_names = list(service_names)
        self.host = host
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{service_name}-grpc"),
            interceptors=[MetricsInterceptor()],
            # gRPC sets SO_REUSEPORT by default: a second process on the same port would silently
            # share its calls instead of failing to start.
            options=[("grpc.so_reuseport", 0), *options],
        )
        register(self.server)
        self.health = _HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        address = f"{host}:{port}"
        credentials = server_credentials(grpc_settings) if grpc_settings else None
        self.security = "plaintext"  # what the start-up log line reports
        if credentials is not None and grpc_settings is not None:
            self.security = "mutual TLS" if grpc_settings.tls_client_auth else "TLS"
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # recent grpcio raises; older ones returned 0
            raise GrpcBindError(f"{service_name}: cannot listen for gRPC on {address}: {exc}") from None
        if not self.port:
            raise GrpcBindError(f"{service_name}: cannot listen for gRPC on {address}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        # Statuses are set before the server accepts calls, so no probe ever sees NOT_FOUND.
        for name in ["", *self.service_names]:
            self.health.set(name, SERVING)
        self.server.start()
        log.info(
            "gRPC serving on %s (%s)",
            self.address,
            self.security,
            extra={"grpc_port": self.port, "grpc_services": self.service_names, "grpc_security": self.security},
        )

    def stop(self, grace: float | None) -> None:
        """Drain and stop; returns when every call has finished or ``grace`` seconds have passed.

        Health goes NOT_SERVING first (watching clients move away), then the server stops accepting
        calls while in-flight ones may finish within ``grace``; the rest are cancelled.
        """
        self.health.enter_graceful_shutdown()
        log.info("gRPC health NOT_SERVING")
        stopped = self.server.stop(grace)
        self.health.end_watches()
        log.info("gRPC refusing new calls; draining in-flight calls (grace %s s)", grace)
        stopped.wait()
        log.info("gRPC server stopped")

    def __enter__(self) -> GrpcServer:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop(grace=0)
