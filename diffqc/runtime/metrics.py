"""Prometheus metrics shared by every service, the /metrics endpoint and the gRPC metrics interceptor.

The metric objects live in the default registry, so every process exposes the same names (plus
prometheus-client's process_* and python_* collectors) and dashboards work across services. The gRPC
server metrics carry the names and labels of the grpc-ecosystem interceptors (go-grpc-prometheus,
py-grpc-prometheus), so community gRPC dashboards read them as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

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
CONSUMER_LAG = Gauge(
    "diffqc_consumer_lag",
    "Messages between the consumer group's committed offset and the partition's high watermark, by stage "
    "(consumer group), input topic and partition; reported by the consume loop holding the partition",
    ["group", "topic", "partition"],
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
_GRPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
GRPC_STARTED = Counter("grpc_server_started", "gRPC calls the server began, by type, service and method", _GRPC_LABELS)
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "gRPC calls the server ended, whatever their outcome, by type, service, method and status code",
    [*_GRPC_LABELS, "grpc_code"],
)
GRPC_RECEIVED = Counter(
    "grpc_server_msg_received", "Request messages the server read (one per unary request)", _GRPC_LABELS
)
GRPC_SENT = Counter(
    "grpc_server_msg_sent", "Response messages the server wrote (one per successful unary call)", _GRPC_LABELS
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from a gRPC call's start to its status (streams: until the last message), by type, service and method",
    _GRPC_LABELS,
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
VERDICTS_RECORDED = Counter(
    "diffqc_verdicts",
    "Inspection verdicts recorded, by verdict (pass|defect|not_inspected); a replayed frame's real verdict "
    "replaces its not_inspected one and is counted too",
    ["verdict"],
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> int:
    """Serve /metrics over HTTP in a daemon thread; return the bound port (``port=0`` picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


# Probes and tooling: counting them would drown the calls that matter.
_UNMETERED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every call under the grpc-ecosystem names (streams: until the last message)."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_UNMETERED):
            return handler
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            rpc = _Rpc("unary", method)
            return grpc.unary_unary_rpc_method_handler(_metered(handler.unary_unary, rpc), *codecs)
        if handler.stream_unary:
            rpc = _Rpc("client_stream", method)
            return grpc.stream_unary_rpc_method_handler(_metered(handler.stream_unary, rpc), *codecs)
        if handler.unary_stream:
            rpc = _Rpc("server_stream", method)
            return grpc.unary_stream_rpc_method_handler(_metered_stream(handler.unary_stream, rpc), *codecs)
        rpc = _Rpc("bidi_stream", method)
        return grpc.stream_stream_rpc_method_handler(_metered_stream(handler.stream_stream, rpc), *codecs)


class _Rpc:
    """One call's metrics: its grpc_type, grpc_service and grpc_method labels, and when it started."""

    def __init__(self, grpc_type: str, full_method: str):
        service, _, method = full_method.removeprefix("/").partition("/")
        self.labels = {"grpc_type": grpc_type, "grpc_service": service, "grpc_method": method}
        self.started = 0.0

    def start(self, request: Any) -> Any:
        """Count the call and its request message(s); the request, its stream counted as it is read."""
        GRPC_STARTED.labels(**self.labels).inc()
        self.started = time.perf_counter()
        received = GRPC_RECEIVED.labels(**self.labels)
        if self.labels["grpc_type"] in ("client_stream", "bidi_stream"):
            return _counted(request, received)
        received.inc()
        return request

    def sent(self) -> Counter:
        return GRPC_SENT.labels(**self.labels)

    def handled(self, code: grpc.StatusCode) -> None:
        GRPC_HANDLED.labels(**self.labels, grpc_code=code.name).inc()
        GRPC_SECONDS.labels(**self.labels).observe(time.perf_counter() - self.started)


def _counted(messages: Iterator, counter: Counter) -> Generator:
    """``messages``, counting each one passed on; closing this closes them too, at once."""
    try:
        for message in messages:
            counter.inc()
            yield message
    finally:
        if isinstance(messages, Generator):
            messages.close()


def _status(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status a handler set (``set_code`` or ``abort``), else ``default``."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]  # grpcio >= 1.38; not in typeshed
    return code or default


def _metered(behavior: Callable, rpc: _Rpc) -> Callable:
    def metered(request, context: grpc.ServicerContext):
        code = grpc.StatusCode.UNKNOWN  # what gRPC reports for an exception without a code
        try:
            response = behavior(rpc.start(request), context)
            code = _status(context, grpc.StatusCode.OK)  # a handler may set_code() and return
            if code is grpc.StatusCode.OK:
                rpc.sent().inc()
            return response
        except Exception:
            code = _status(context, grpc.StatusCode.UNKNOWN)  # context.abort() sets it, then raises
            raise
        finally:
            rpc.handled(code)

    return metered


def _metered_stream(behavior: Callable, rpc: _Rpc) -> Callable:
    def metered(request, context: grpc.ServicerContext) -> Iterator:
        code = grpc.StatusCode.UNKNOWN
        try:
            yield from _counted(behavior(rpc.start(request), context), rpc.sent())
            code = _status(context, grpc.StatusCode.OK)
        except GeneratorExit:  # gRPC closes the generator when the client cancels
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        finally:
            rpc.handled(code)

    return metered
