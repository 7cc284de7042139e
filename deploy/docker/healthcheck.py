"""Container healthcheck: exit 0 when this container's service is healthy, 1 otherwise.

gRPC services (default): the standard gRPC health check on ``DIFFQC_SERVICE_GRPC_PORT`` answers
SERVING. ``--http URL``: the URL answers 2xx (the gateway). No probe binary in the image: this is
the same check the local launcher uses.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from diffqc.infra.services import grpc_is_serving
from diffqc.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", metavar="URL", help="check this HTTP URL instead of the gRPC health service")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    if args.http:
        try:
            healthy = httpx.get(args.http, timeout=args.timeout).is_success
        except httpx.HTTPError:
            healthy = False
        target = args.http
    else:
        try:
            port = load_settings().service.grpc_port
        except SettingsError as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
        target = f"127.0.0.1:{port}"
        healthy = grpc_is_serving(target, args.timeout)
    if not healthy:
        print(f"unhealthy: {target} did not answer healthy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
