"""The gateway's client of ingestion's gRPC ``IngestOne``, and how its answers become HTTP statuses."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from services.gateway.errors import ApiError
from services.ingestion.service import SERVICE_NAME

# gRPC status of a failed call -> HTTP status of the upload. Ingestion answers a bad frame with a
# REJECTED ack (status OK); a failed call is about the call or the service itself.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,  # over ingestion's gRPC message limit
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
STATUS_NAMES = {
    ingestion_pb2.INGEST_STATUS_ACCEPTED: "accepted",
    ingestion_pb2.INGEST_STATUS_DUPLICATE: "duplicate",
}


def http_status(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 502)  # anything else: ingestion failed (502 Bad Gateway)


class IngestionClient:
    def __init__(self, address: str, timeout_s: float, grpc_settings: GrpcSettings | None = None):
        self.address = address
        self.timeout_s = timeout_s
        # gRPC clients send without a size limit. Short reconnect backoff: once ingestion is back (a
        # restart, a rollout), uploads get through within seconds instead of after up to two minutes.
        # TLS when the gRPC settings name a CA or a certificate (diffqc.security.tls); plaintext without.
        self.channel = channel(address, grpc_settings or GrpcSettings(), options=RECONNECT_OPTIONS)
        self.stub = ingestion_pb2_grpc.IngestionServiceStub(self.channel)

    def ingest(self, frame: Frame, image: bytes) -> ingestion_pb2.IngestResponse:
        """The ack of an ACCEPTED or DUPLICATE frame; ApiError for a rejected frame or a failed call."""
        try:
            ack: ingestion_pb2.IngestResponse = self.stub.IngestOne(
                ingestion_pb2.IngestRequest(frame=frame, image_data=image), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise ApiError(
                http_status(exc.code()), f"ingestion at {self.address} failed: {exc.code().name}: {exc.details()}"
            ) from None
        if ack.status == ingestion_pb2.INGEST_STATUS_REJECTED:
            raise ApiError(422, ack.detail)
        if ack.status not in STATUS_NAMES:
            raise ApiError(502, f"ingestion at {self.address} answered status {ack.status} for frame {ack.frame_id!r}")
        return ack

    def serving(self) -> bool:
        try:
            response: health_pb2.HealthCheckResponse = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()
