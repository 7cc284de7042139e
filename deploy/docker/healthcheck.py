"""Container healthcheck: exit 0 when this container's service is healthy, 1 otherwise.

gRPC services (default): the standard gRPC health check on ``DIFFQC_SERVICE_GRPC_PORT`` answers
SERVING, over TLS with the pod's own certificate when ``DIFFQC_GRPC_TLS_*`` turn TLS on (the
kubelet's native gRPC probe cannot speak TLS); ``--server-name`` is the name the certificate carries
(the Service's), since the check dials 127.0.0.1. ``--http URL``: the URL answers 2xx (the gateway).
No probe binary in the image: the check uses diffqc's own gRPC channel.
"""

from __future__ import annotations

import argparse
import sys

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings, SettingsError, load_settings


def grpc_is_serving(target: str, settings: GrpcSettings, timeout_s: float) -> bool:
    try:
        with channel(target, settings) as health_channel:
            stub = health_pb2_grpc.HealthStub(health_channel)
            response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            return response.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", metavar="URL", help="check this HTTP URL instead of the gRPC health service")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    parser.add_argument("--server-name", help="name in the service's TLS certificate (default: the address dialled)")
    args = parser.parse_args(argv)
    if args.http:
        try:
            healthy = httpx.get(args.http, timeout=args.timeout).is_success
        except httpx.HTTPError:
            healthy = False
        target = args.http
    else:
        try:
            settings = load_settings()
            grpc_settings = settings.grpc
            if args.server_name:
                grpc_settings = grpc_settings.model_copy(update={"tls_server_name": args.server_name})
            target = f"127.0.0.1:{settings.service.grpc_port}"
            healthy = grpc_is_serving(target, grpc_settings, args.timeout)
        except SettingsError as exc:  # also a missing or unreadable certificate
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
    if not healthy:
        print(f"unhealthy: {target} did not answer healthy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
