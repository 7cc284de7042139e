"""gRPC ``Ingest`` (bidirectional stream, one ack per frame, in order) and ``IngestOne`` for cameras.

One frame, in order:

1. metadata: frame_id (assigned when empty, unless ``ingestion.require_frame_id``), plant_id,
   line_id, station_id, camera_id, product_type, capture_time; the whole Frame at most
   ``ingestion.max_metadata_bytes`` (the largest field is named), lengths the schema can hold, no
   control characters, finite process parameters, a known priority;
2. a frame id already stored is acknowledged DUPLICATE at once (nothing is decoded, stored or
   published again);
3. the product type must be registered (``diffqc.store.products``);
4. the image (``image_data``, or the blob ``frame.image`` references): at most
   ``ingestion.max_image_bytes``, then ``diffqc.data.images.load_image`` as preprocessing will
   read it: PNG/JPEG/BMP/TIFF by its magic bytes, one frame, a pixel mode it reads, at most the
   pixel limit of ``ingestion.max_pixels`` and ``ingestion.memory_budget_bytes`` by its header
   (before any pixel is decoded: the decompression-bomb guard), and fully decodable (truncation
   shows here); a ``frame.shape`` the client declared must match it;
5. the bytes go to the content-addressed blob store; ``image``, ``shape`` and ``ingest_time`` are
   filled in; the plant/line/station/camera rows are registered if new;
6. in one database transaction: insert the frame row (``ON CONFLICT DO NOTHING``), produce the
   Frame to ``qc.frames.v1`` (key = line id, header ``frame_id``) and wait for the broker's
   acknowledgement, then commit; then ACCEPTED.

A frame failing 1-4 gets a REJECTED ack naming the problem and nothing is stored or published;
the stream goes on. So does a frame whose event the broker refuses for good (PublishRefused):
its row is rolled back. A failure of the service's own dependencies (database, broker, blob store)
ends the call with UNAVAILABLE: the client re-sends what it has no ack for.

Plant fan-in: one process serves at most ``ingestion.max_streams`` camera streams at once (one more
is refused with RESOURCE_EXHAUSTED, so the camera backs off or goes to another replica), each on a
gRPC thread of its own on top of ``service.grpc_workers``, which stay free for single frames and
health probes. At most ``ingestion.max_frames_in_flight`` frames are checked, decoded and stored at
once; a stream waiting for its turn reads nothing more, and HTTP/2 flow control holds its camera
back: no queue grows without bound.

Why the event is produced inside the row's transaction: a committed row then always means the
event was durably published before it, so a re-sent frame whose row exists can be answered
DUPLICATE without publishing again, and nothing is emitted twice. A crash after the publish but
before the commit leaves an event without a row; the client's re-send then inserts the row and
publishes a second event for the frame (at least once; every consumer is idempotent by frame id).
On PostgreSQL two requests racing on one frame id serialize on the row: the second waits, then
sees the conflict and answers DUPLICATE without publishing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from prometheus_client import Counter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.bus.producer import Publisher, PublishRefused
from diffqc.contracts.topics import FRAMES
from diffqc.core import clock
from diffqc.data.images import ImageLimits, ImageReadError, load_image
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.logging import frame_context
from diffqc.settings import Settings
from diffqc.store import db
from diffqc.store.blobs import BlobNotFound, BlobRefused, BlobStore, BlobTooLarge
from diffqc.store.frames import ensure_equipment, frame_from_row, get_frame, record_frame
from diffqc.store.products import find_product_type
from diffqc.v1 import ingestion_pb2_grpc
from diffqc.v1.common_pb2 import BlobRef, Priority, Shape
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.ingestion_pb2 import (
    INGEST_STATUS_ACCEPTED,
    INGEST_STATUS_DUPLICATE,
    INGEST_STATUS_REJECTED,
    IngestRequest,
    IngestResponse,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "diffqc.v1.IngestionService"
GRPC_HEADROOM_BYTES = 4 * 1024 * 1024  # the gRPC message limit is the image limit plus this, for the metadata

STREAMS_REFUSED = Counter(
    "diffqc_ingestion_streams_refused", "Camera streams refused because the process serves max_streams already"
)
FRAMES_INGESTED = Counter(
    "diffqc_ingested_frames",
    "Frames answered by ingestion, by outcome (accepted|duplicate|rejected) and rejection reason",
    ["outcome", "reason"],
)

MAX_ID_LENGTH = 64  # plant/line/station/camera/product ids, work order, lot: VARCHAR(64)
MAX_FRAME_ID_LENGTH = 128  # frames.id is VARCHAR(128)
MAX_PARAMETER_NAME_LENGTH = 128
MAX_URI_LENGTH = 1000  # frames.image_uri is VARCHAR(1000)
REQUIRED_IDS = ("plant_id", "line_id", "station_id", "camera_id", "product_type")
OPTIONAL_IDS = ("work_order", "lot")


class FrameRejected(ValueError):
    """The frame is invalid; ``str()`` is the ack's detail, ``reason`` a short code for metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class CheckedImage:
    media_type: str
    shape: Shape


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """Server options so that a request carrying the largest accepted image fits in one gRPC message."""
    return [("grpc.max_receive_message_length", settings.ingestion.max_image_bytes + GRPC_HEADROOM_BYTES)]


def check_metadata(frame: Frame, max_bytes: int) -> None:
    """Raise FrameRejected naming every missing required field, or the first malformed one.

    The size comes first: it bounds the work of every other check, the row and the event (a Frame
    within it cannot outgrow the broker's message limit).
    """
    size = frame.ByteSize()
    if size > max_bytes:
        field, field_size = _largest_field(frame)
        raise FrameRejected(
            "metadata_too_large",
            f"frame metadata is {size} bytes, over the limit of {max_bytes} bytes; the largest field is "
            f"{field} ({field_size} bytes{_entries(frame, field)})",
        )
    missing = [name for name in ("frame_id", *REQUIRED_IDS) if not getattr(frame, name).strip()]
    if not frame.HasField("capture_time"):
        missing.append("capture_time")
    if missing:
        raise FrameRejected("metadata", f"missing required metadata: {', '.join(missing)}")
    for name in ("frame_id", *REQUIRED_IDS, *OPTIONAL_IDS):
        value = getattr(frame, name)
        limit = MAX_FRAME_ID_LENGTH if name == "frame_id" else MAX_ID_LENGTH
        if len(value) > limit:
            raise FrameRejected("metadata", f"{name} is {len(value)} characters long, over the limit of {limit}")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise FrameRejected("metadata", f"{name} {value!r} contains control characters")
    try:
        clock.to_datetime(frame.capture_time)
    except (ValueError, OverflowError) as exc:
        raise FrameRejected("metadata", f"capture_time is not a valid timestamp ({exc})") from None
    for name, value in frame.process_parameters.items():
        if not name.strip() or len(name) > MAX_PARAMETER_NAME_LENGTH or any(ord(ch) < 32 for ch in name):
            raise FrameRejected(
                "metadata",
                f"process parameter name {name!r} must be 1-{MAX_PARAMETER_NAME_LENGTH} printable characters",
            )
        if not math.isfinite(value):
            raise FrameRejected("metadata", f"process parameter {name!r} is {value}, not a finite number")
    if frame.priority not in Priority.values():
        raise FrameRejected("metadata", f"priority {frame.priority} is not a Priority ({', '.join(Priority.keys())})")
    if len(frame.image.uri) > MAX_URI_LENGTH:
        raise FrameRejected(
            "metadata", f"image.uri is {len(frame.image.uri)} characters long, over the limit of {MAX_URI_LENGTH}"
        )


def _largest_field(frame: Frame) -> tuple[str, int]:
    """The set field that takes most of the serialized Frame, and its share in bytes."""
    total, shares = frame.ByteSize(), {}
    for field, _ in frame.ListFields():
        without = Frame()
        without.CopyFrom(frame)
        without.ClearField(field.name)
        shares[field.name] = total - without.ByteSize()
    name = max(shares, key=lambda n: shares[n])
    return name, shares[name]


def _entries(frame: Frame, field: str) -> str:
    return f", {len(frame.process_parameters)} entries" if field == "process_parameters" else ""


def check_image(data: bytes, max_bytes: int, limits: ImageLimits) -> CheckedImage:
    """Validate encoded image bytes; return the media type and the shape ``diffqc.data.images`` reads.

    The byte limit is checked before PIL sees the data; then ``load_image`` (the format by its magic
    bytes, one frame, the pixel mode, the pixel limit from the header before any pixel is decoded)
    decodes it exactly as preprocessing will, so what is accepted here is readable there.
    """
    if not data:
        raise FrameRejected("no_image", "no image: image_data is empty and frame.image references no blob")
    if len(data) > max_bytes:
        raise FrameRejected("too_many_bytes", f"image is {len(data)} bytes, over the limit of {max_bytes} bytes")
    try:
        loaded = load_image(data, "image_data", limits)
    except ImageReadError as exc:
        raise FrameRejected(exc.code, exc.reason) from None
    height, width, channels = loaded.pixels.shape
    return CheckedImage(loaded.media_type, Shape(height=height, width=width, channels=channels))


def check_declared_shape(frame: Frame, shape: Shape) -> None:
    """A shape the client declared (any dimension set) must be the image's."""
    declared = frame.shape
    if not (declared.height or declared.width or declared.channels):
        return
    if (declared.height, declared.width, declared.channels) != (shape.height, shape.width, shape.channels):
        raise FrameRejected(
            "shape_mismatch",
            f"frame.shape says {declared.width}x{declared.height}x{declared.channels} (WxHxC) but the image is "
            f"{shape.width}x{shape.height}x{shape.channels}",
        )


class Ingestion:
    """What both RPCs share: validation, the blob store, the database, the producer."""

    def __init__(self, settings: Settings, engine: Engine, blobs: BlobStore):
        self.settings, self.engine, self.blobs = settings, engine, blobs
        self.limits = settings.ingestion
        self.publisher = Publisher(settings.kafka, timeout_s=self.limits.produce_timeout_s)
        self._known_products: set[str] = set()  # product types are never unregistered while frames flow
        self._known_equipment: set[tuple[str, str, str, str]] = set()
        self.image_limits = ImageLimits.of(settings.ingestion)

    def close(self) -> None:
        self.publisher.close()

    def ingest(self, request: IngestRequest) -> IngestResponse:
        """Ingest one frame; raises DependencyUnavailable when a dependency of the service fails."""
        frame = Frame()
        frame.CopyFrom(request.frame)
        if not frame.frame_id and not self.limits.require_frame_id:
            frame.frame_id = str(uuid.uuid4())
        with frame_context(frame.frame_id):
            try:
                return self._ingest(frame, request.image_data)
            except FrameRejected as exc:
                return self._rejected(frame, exc)
            except PublishRefused as exc:  # its event can never be published (the row was rolled back)
                return self._rejected(frame, FrameRejected("publish_refused", f"frame not ingested: {exc}"))

    def _rejected(self, frame: Frame, exc: FrameRejected) -> IngestResponse:
        FRAMES_INGESTED.labels(outcome="rejected", reason=exc.reason).inc()
        log.warning("frame rejected: %s", exc, extra={"reason": exc.reason, "line_id": frame.line_id})
        return IngestResponse(frame_id=frame.frame_id, status=INGEST_STATUS_REJECTED, detail=str(exc))

    def _ingest(self, frame: Frame, image_data: bytes) -> IngestResponse:
        check_metadata(frame, self.limits.max_metadata_bytes)
        with db.session(self.engine) as session:
            stored = get_frame(session, frame.frame_id)
            if stored is not None:
                return self._duplicate(frame_from_row(stored))
            self._check_product(session, frame.product_type)
        data = image_data if image_data else self._referenced_image(frame.image)
        checked = check_image(data, self.limits.max_image_bytes, self.image_limits)
        check_declared_shape(frame, checked.shape)
        if frame.image.sha256 and frame.image.sha256.lower() != (digest := hashlib.sha256(data).hexdigest()):
            raise FrameRejected(
                "image_mismatch", f"frame.image.sha256 {frame.image.sha256} does not match the image's SHA-256 {digest}"
            )
        ref = self.blobs.put(data, checked.media_type)  # durable on return; DependencyUnavailable if it fails
        frame.image.CopyFrom(ref)
        frame.shape.CopyFrom(checked.shape)
        frame.ingest_time.GetCurrentTime()
        self._ensure_equipment(frame)
        with db.session(self.engine, write=True) as session:
            if not record_frame(session, frame):  # a concurrent request with this id won
                winner = get_frame(session, frame.frame_id)
                if winner is None:  # recorded by the other request, then deleted before we read it
                    raise RuntimeError(f"frame {frame.frame_id!r} vanished while it was being recorded")
                return self._duplicate(frame_from_row(winner))
            self._publish(frame)  # raises before the commit: no row without its event
        FRAMES_INGESTED.labels(outcome="accepted", reason="").inc()
        log.info(
            "frame accepted",
            extra={
                "line_id": frame.line_id,
                "product_type": frame.product_type,
                "bytes": ref.size_bytes,
                "sha256": ref.sha256,
            },
        )
        return IngestResponse(frame_id=frame.frame_id, status=INGEST_STATUS_ACCEPTED, image=ref)

    def _duplicate(self, stored: Frame) -> IngestResponse:
        FRAMES_INGESTED.labels(outcome="duplicate", reason="").inc()
        log.info("duplicate frame id: already ingested, nothing done")
        return IngestResponse(frame_id=stored.frame_id, status=INGEST_STATUS_DUPLICATE, image=stored.image)

    def _check_product(self, session: Session, product_type: str) -> None:
        if product_type in self._known_products:
            return
        if find_product_type(session, product_type) is None:
            raise FrameRejected("unknown_product", f"unknown product type {product_type!r}: register it first")
        self._known_products.add(product_type)

    def _referenced_image(self, ref: BlobRef) -> bytes:
        """The bytes of a blob the edge gateway stored itself (requests without image_data), by digest or URI."""
        if not ref.uri and not ref.sha256:
            return b""
        if ref.size_bytes > self.limits.max_image_bytes:
            raise FrameRejected(
                "too_many_bytes",
                f"image is {ref.size_bytes} bytes, over the limit of {self.limits.max_image_bytes} bytes",
            )
        try:  # the store reads by digest, bounded by the limit before any byte is read
            return self.blobs.get(ref, max_bytes=self.limits.max_image_bytes)
        except BlobTooLarge as exc:
            raise FrameRejected("too_many_bytes", f"frame.image: {exc}") from None
        except BlobRefused as exc:
            raise FrameRejected("image_refused", f"frame.image is refused: {exc}") from None
        except BlobNotFound as exc:
            raise FrameRejected("no_image", f"frame.image references no stored blob: {exc}") from None

    def _ensure_equipment(self, frame: Frame) -> None:
        key = (frame.plant_id, frame.line_id, frame.station_id, frame.camera_id)
        if key in self._known_equipment:
            return
        with db.session(self.engine, write=True) as session:
            ensure_equipment(session, *key)
        self._known_equipment.add(key)

    def _publish(self, frame: Frame) -> None:
        """Produce the frame event and wait until the broker has it (acks=all), or raise DependencyUnavailable."""
        self.publisher.send(FRAMES, frame)


class IngestionServicer(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, ingestion: Ingestion):
        self.ingestion = ingestion
        limits = ingestion.settings.ingestion
        self.max_streams = limits.max_streams
        self.streams = threading.BoundedSemaphore(limits.max_streams)
        self.frames = threading.BoundedSemaphore(limits.max_frames_in_flight)

    def Ingest(
        self, request_iterator: Iterator[IngestRequest], context: grpc.ServicerContext
    ) -> Iterator[IngestResponse]:
        if not self.streams.acquire(blocking=False):
            STREAMS_REFUSED.inc()
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this ingestion process serves {self.max_streams} camera streams already "
                "(DIFFQC_INGESTION_MAX_STREAMS): retry with backoff",
            )
        try:
            for request in request_iterator:
                yield self._one(request, context)
        finally:
            self.streams.release()

    def IngestOne(self, request: IngestRequest, context: grpc.ServicerContext) -> IngestResponse:
        return self._one(request, context)

    def _one(self, request: IngestRequest, context: grpc.ServicerContext) -> IngestResponse:
        try:
            with self.frames:
                return self.ingestion.ingest(request)
        except DependencyUnavailable as exc:
            log.error("ingestion unavailable: %s", exc, extra={"frame_id": request.frame.frame_id or None})
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"{exc}; frame {request.frame.frame_id!r} was not acknowledged: re-send it and every frame "
                "sent after it",
            )
        except Exception as exc:
            log.exception("ingestion failed")
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"ingestion failed on frame {request.frame.frame_id!r}: "
                f"{exc.__class__.__name__}: {exc}; re-send the frames without an ack",
            )
