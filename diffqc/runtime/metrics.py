"""Prometheus metrics shared by every service, the /metrics endpoint and the gRPC metrics interceptor.

The metric objects live in the default registry, so every process exposes the same names (plus
prometheus-client's process_* and python_* collectors) and dashboards work across services.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Seconds; inference on CPU can take tens of seconds, so the buckets reach further than the default.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MESSAGES = Counter(
    "diffqc_messages",
    "Kafka messages handled, by input topic and outcome (ok|retried|dead_lettered)",
    ["topic", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "diffqc_message_handle_seconds",
    "Time to handle one Kafka message successfully, by input topic",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
CONSUMERS_PAUSED = Gauge(
    "diffqc_consumer_paused",
    "Consume loops with their partitions paused while a failed message waits for its retry (above 0 for "
    "minutes: a dependency is down), by stage (consumer group) and input topic",
    ["group", "topic"],
)
BLOB_STORE_ERRORS = Counter(
    "diffqc_blob_store_errors",
    "Blob store operations the storage failed (disk full, I/O error, read-only or stale volume; S3 throttling, "
    "5xx, refused credentials, no connection ...), by operation (write|read|list|delete|clean|bucket) and error "
    "(errno name, S3 error code or client error class)",
    ["operation", "error"],
)
BLOB_VOLUME_USED = Gauge(
    "diffqc_blob_volume_used_ratio",
    "Share of the file blob store's volume in use (0..1), read at each scrape by every service on the file "
    "backend; diffqc retention deletes the oldest blobs above DIFFQC_RETENTION_DISK_HIGH_WATER",
)
GRPC_CALLS = Counter(
    "diffqc_grpc_server_calls", "gRPC calls served, by full method name and status code", ["method", "code"]
)
GRPC_SECONDS = Histogram(
    "diffqc_grpc_server_call_seconds",
    "Duration of gRPC calls served, by full method name",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
CREDENTIALS_REFUSED = Counter(
    "diffqc_credentials_refused",
    "Requests a dependency refused for their credentials (HTTP 401/403: a rotated or revoked token); each is "
    "retried until the credentials work again, so any increase is an alarm, by dependency",
    ["dependency"],
)
TRIAL_SCORE_FAILURES = Counter(
    "diffqc_trial_score_failures",
    "Frames a model version under trial (shadow, or production beside a canary) failed to score, by version",
    ["version"],
)
CANARY_ROLLBACKS = Counter(
    "diffqc_canary_rollbacks", "Canaries the guard ended for raising too many alarms, by product", ["product"]
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics over HTTP in a daemon thread; return the bound port (``port=0`` picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


# Probes and tooling: counting them would drown the calls that matter.
_UNMETERED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every call by method and status code and times it (streams: until the last message)."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_UNMETERED):
            return handler
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_timed(handler.unary_unary, method), *codecs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_timed(handler.stream_unary, method), *codecs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_timed_stream(handler.unary_stream, method), *codecs)
        return grpc.stream_stream_rpc_method_handler(_timed_stream(handler.stream_stream, method), *codecs)


def _status(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status a handler set (``set_code`` or ``abort``), else ``default``."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]  # grpcio >= 1.38; not in typeshed
    return code or default


def _record(method: str, code: grpc.StatusCode, started: float) -> None:
    GRPC_CALLS.labels(method=method, code=code.name).inc()
    GRPC_SECONDS.labels(method=method).observe(time.perf_counter() - started)


def _timed(behavior: Callable, method: str) -> Callable:
    def timed(request, context: grpc.ServicerContext):
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN  # what gRPC reports for an exception without a code
        try:
            response = behavior(request, context)
            code = _status(context, grpc.StatusCode.OK)  # a handler may set_code() and return
            return response
        except Exception:
            code = _status(context, grpc.StatusCode.UNKNOWN)  # context.abort() sets it, then raises
            raise
        finally:
            _record(method, code, started)

    return timed


def _timed_stream(behavior: Callable, method: str) -> Callable:
    def timed(request, context: grpc.ServicerContext) -> Iterator:
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            yield from behavior(request, context)
            code = _status(context, grpc.StatusCode.OK)
        except GeneratorExit:  # gRPC closes the generator when the client cancels
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        finally:
            _record(method, code, started)

    return timed
