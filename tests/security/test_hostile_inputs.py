"""Hostile inputs through every entry point reachable without the gateway: ingestion's gRPC
``Ingest`` and ``IngestOne`` on a real ingestion service process (the REST upload forwards to
``IngestOne``), and ``diffqc detect``. Each input gets a clear error, the process survives, and
nothing of it is stored (no frame row, no blob, no event).

``python -m tests.security.test_hostile_inputs`` prints the table that docs/security.md embeds
under "## Hostile inputs"; a test keeps the two equal, the others check every row against the
real answers.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from diffqc.contracts.topics import FRAMES
from diffqc.infra.ports import free_port
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.process import pid_alive
from diffqc.infra.services import PROJECT_ROOT, service_process
from diffqc.settings import KafkaSettings
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame as FrameRow
from diffqc.store.products import register_product
from diffqc.v1 import ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.ingestion_pb2 import INGEST_STATUS_ACCEPTED, INGEST_STATUS_REJECTED, IngestRequest, IngestResponse
from tests.helpers.kafka import collect
from tests.security import corpus

GRPC = "gRPC Ingest / IngestOne"
CLI = "CLI `diffqc detect`"
DOCS = PROJECT_ROOT / "docs" / "security.md"
HEADING = "## Hostile inputs"
MIB = 2**20


@dataclass(frozen=True)
class Answer:
    status: str  # "REJECTED" (an ack), a gRPC status code name, or "exit 2" (the CLI)
    parts: tuple[str, ...]  # what the detail / message must contain, in order

    def __str__(self) -> str:
        return f"{self.status}: " + " … ".join(self.parts)


def rejected(*parts: str) -> Answer:
    return Answer("REJECTED", parts)


def exit2(*parts: str) -> Answer:
    return Answer("exit 2", parts)


@dataclass(frozen=True)
class Case:
    name: str
    image: Callable[[], bytes]
    answers: dict[str, Answer]
    tamper: Callable[[IngestRequest], None] | None = None  # changes the metadata of the gRPC request
    wire: Callable[[bytes], bytes] | None = None  # rewrites the serialized gRPC request

    def request(self, line: str) -> bytes:
        req = IngestRequest(frame=frame(line), image_data=self.image())
        if self.tamper:
            self.tamper(req)
        data = req.SerializeToString()
        return self.wire(data) if self.wire else data


def both(*parts: str) -> dict[str, Answer]:
    """The same decoder answers both entry points: a REJECTED ack, and `detect` exits 2."""
    return {GRPC: rejected(*parts), CLI: exit2(*parts)}


def grpc_only(answer: Answer) -> dict[str, Answer]:
    return {GRPC: answer}


def frame(line: str) -> Frame:
    f = Frame(
        frame_id=f"f-{uuid.uuid4().hex[:12]}",
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type="pcb",
    )
    f.capture_time.GetCurrentTime()
    return f


def _set(**fields) -> Callable[[IngestRequest], None]:
    def tamper(req: IngestRequest) -> None:
        for name, value in fields.items():
            setattr(req.frame, name, value)

    return tamper


def _parameters(n: int) -> Callable[[IngestRequest], None]:
    def tamper(req: IngestRequest) -> None:
        for i in range(n):
            req.frame.process_parameters[f"p{i:04d}"] = float(i)

    return tamper


def _shape(req: IngestRequest) -> None:
    req.frame.shape.height, req.frame.shape.width, req.frame.shape.channels = 10, 10, 3


def _nan(req: IngestRequest) -> None:
    req.frame.process_parameters["oven_temp_c"] = float("nan")


def _far_future(req: IngestRequest) -> None:
    req.frame.capture_time.seconds = 10**12  # year ~33658: beyond Timestamp's range


def _frame_field(extra: bytes) -> Callable[[bytes], bytes]:
    """Append raw bytes to the serialized Frame (field 1 of IngestRequest) and re-frame it."""

    def rewrite(data: bytes) -> bytes:
        req = IngestRequest.FromString(data)
        body = req.frame.SerializeToString() + extra
        req.ClearField("frame")
        return _varint(0x0A) + _varint(len(body)) + body + req.SerializeToString()

    return rewrite


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


BUDGET = "the memory budget of 1024 MiB / (3 channel(s) x 4 bytes x 3.25 working copies)"
CASES = [
    Case(
        "PNG bomb: valid all-zero 8000x8000 RGB (187 KB, 1.5 GiB as float32)",
        lambda: corpus.png_bomb(8000, 8000),
        both("PNG image is 8000x8000 = 64000000 pixels, which exceeds the limit of 27531841 pixels", BUDGET),
    ),
    Case(
        "TIFF bomb: valid all-zero deflate 8000x8000 RGB (187 KB)",
        lambda: corpus.tiff_bomb(8000, 8000),
        both("TIFF image is 8000x8000 = 64000000 pixels, which exceeds the limit of 27531841 pixels", BUDGET),
    ),
    Case(
        "PNG header claiming 9000x9000 (81 Mpx)",
        lambda: corpus.png_claiming(9000, 9000),
        both("PNG image is 9000x9000 = 81000000 pixels, which exceeds the limit of 64000000 pixels (the pixel limit"),
    ),
    Case(
        "JPEG header (SOF0) claiming 9000x9000",
        lambda: corpus.jpeg_claiming(9000, 9000),
        both("JPEG image is 9000x9000 = 81000000 pixels, which exceeds the limit of 64000000 pixels"),
    ),
    Case(
        "PNG header claiming 100000x100000 (10 Gpx)",
        lambda: corpus.png_claiming(100_000, 100_000),
        both("PNG image refused as a decompression bomb", "the limit is 64000000 pixels"),
    ),
    Case(
        "JPEG header claiming 60000x60000",
        lambda: corpus.jpeg_claiming(60_000, 60_000),
        both("JPEG image refused as a decompression bomb", "the limit is 64000000 pixels"),
    ),
    Case(
        "TIFF header claiming 100000x100000",
        lambda: corpus.tiff(100_000, 100_000, 1, bytes(16)),
        both("TIFF image refused as a decompression bomb", "the limit is 64000000 pixels"),
    ),
    Case(
        "PNG with a zTXt chunk inflating to 64 MB",
        corpus.png_text_bomb,
        both("corrupt or truncated PNG image data (Decompressed data too large"),
    ),
    Case("truncated PNG", lambda: corpus.truncated(corpus.encode("PNG")), both("corrupt or truncated PNG image data")),
    Case(
        "truncated JPEG",
        lambda: corpus.truncated(corpus.encode("JPEG", quality=95)),
        both("corrupt or truncated JPEG image data"),
    ),
    Case(
        "zero bytes",
        lambda: b"",
        {
            GRPC: rejected("no image: image_data is empty"),
            CLI: exit2("unsupported image format: there is no data (0 bytes)"),
        },
    ),
    Case(
        "random bytes",
        lambda: os.urandom(2000),
        both("unsupported image format: the data is not a recognised image format"),
    ),
    Case("GIF", corpus.gif, both("GIF images are not supported; expected PNG, JPEG, BMP or TIFF")),
    Case("multi-page TIFF (3 pages)", corpus.multi_frame_tiff, both("TIFF image has 3 frames")),
    Case("animated PNG (2 frames)", corpus.animated_png, both("PNG image has 2 frames")),
    Case(
        "grayscale + alpha PNG",
        corpus.gray_alpha_png,
        both("PNG image has unsupported pixel mode 'LA': channel count 2"),
    ),
    Case(
        "32-bit float TIFF with values of 1000",
        corpus.float_tiff_out_of_range,
        both("TIFF image has floating-point values outside [0, 1]"),
    ),
    Case(
        "32-bit integer TIFF with values of 2^20",
        corpus.int32_tiff_out_of_range,
        both("TIFF image has 32-bit integer values outside the 16-bit range"),
    ),
    Case(
        "image_data of 65 MiB",
        lambda: b"\x89PNG\r\n\x1a\n" + bytes(65 * MIB - 8),
        grpc_only(rejected(f"image is {65 * MIB} bytes, over the limit of {64 * MIB} bytes")),
    ),
    Case(
        "request of 80 MiB",
        lambda: bytes(80 * MIB),
        grpc_only(Answer("RESOURCE_EXHAUSTED", ("Received message larger than max",))),
    ),
    Case(
        "2000 process parameters (36 KB of metadata)",
        corpus.good_png,
        grpc_only(rejected("over the limit of 16384 bytes; the largest field is process_parameters", "2000 entries")),
        tamper=_parameters(2000),
    ),
    Case(
        "a 100 KB lot",
        corpus.good_png,
        grpc_only(rejected("over the limit of 16384 bytes; the largest field is lot (")),
        tamper=_set(lot="x" * 100_000),
    ),
    Case(
        "a 200-character frame id",
        corpus.good_png,
        grpc_only(rejected("frame_id is 200 characters long, over the limit of 128")),
        tamper=_set(frame_id="f" * 200),
    ),
    Case(
        "control characters in line_id",
        corpus.good_png,
        grpc_only(rejected("contains control characters")),
        tamper=_set(line_id="L1\x00\x1b[2J"),
    ),
    Case(
        "priority 99 (no such enum value)",
        corpus.good_png,
        grpc_only(rejected("priority 99 is not a Priority")),
        tamper=_set(priority=99),
    ),
    Case(
        "NaN process parameter",
        corpus.good_png,
        grpc_only(rejected("process parameter 'oven_temp_c' is nan, not a finite number")),
        tamper=_nan,
    ),
    Case(
        "capture_time in the year 33658",
        corpus.good_png,
        grpc_only(rejected("capture_time is not a valid timestamp")),
        tamper=_far_future,
    ),
    Case(
        "unknown product type",
        corpus.good_png,
        grpc_only(rejected("unknown product type 'bolts': register it first")),
        tamper=_set(product_type="bolts"),
    ),
    Case(
        "declared shape 10x10x3 for a 64x48 RGB image",
        corpus.good_png,
        grpc_only(rejected("frame.shape says 10x10x3 (WxHxC) but the image is 64x48x3")),
        tamper=_shape,
    ),
    Case(
        "line_id sent as a number (wrong wire type)",
        corpus.good_png,
        grpc_only(rejected("missing required metadata: line_id")),  # protobuf keeps it as an unknown field
        tamper=_set(line_id=""),
        wire=_frame_field(b"\x18\x05"),
    ),
    Case(
        "line_id that is not UTF-8",
        corpus.good_png,
        grpc_only(Answer("INTERNAL", ("Exception deserializing request",))),
        wire=_frame_field(b"\x1a\x02\xff\xfe"),
    ),
]
CALL_ERRORS = [case for case in CASES if case.answers.get(GRPC, rejected()).status != "REJECTED"]


def hostile_table() -> str:
    """The Markdown table of every case and the answer each entry point gives (docs/security.md)."""
    rows = ["| case | entry point | answer |", "| --- | --- | --- |"]
    for case in CASES:
        for entry, answer in case.answers.items():
            rows.append(f"| {case.name} | {entry} | {str(answer).replace('|', '/')} |")
    return "\n".join(rows) + "\n"


# -- the ingestion service -------------------------------------------------------------------------


@dataclass
class Ingestion:
    address: str
    pid: int
    db_url: str
    blob_root: Path
    kafka: KafkaSettings

    def call(self, data: bytes, stream: bool = False) -> list:
        """IngestOne (or Ingest with the one request) on raw request bytes: the acks, or the RpcError."""
        with grpc.insecure_channel(self.address) as channel:
            if stream:
                method = channel.stream_stream("/diffqc.v1.IngestionService/Ingest")
                try:
                    return [IngestResponse.FromString(raw) for raw in method(iter([data]), timeout=60)]
                except grpc.RpcError as exc:
                    return [exc]
            try:
                raw = channel.unary_unary("/diffqc.v1.IngestionService/IngestOne")(data, timeout=60)
                return [IngestResponse.FromString(raw)]
            except grpc.RpcError as exc:
                return [exc]

    def stream(self, requests: list[IngestRequest]):
        with grpc.insecure_channel(self.address) as channel:
            return list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=120))

    def rows(self) -> int:
        engine = make_engine(self.db_url)
        with Session(engine) as session:
            count = session.scalar(select(func.count()).select_from(FrameRow))
        engine.dispose()
        return int(count or 0)

    def blobs(self) -> set[str]:
        root = self.blob_root / "sha256"
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture(scope="module")
def ingestion(kafka_bootstrap, tmp_path_factory):
    """``python -m services.ingestion`` with the default limits, its own database, blob store and group."""
    work = tmp_path_factory.mktemp("hostile")
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_prefix=uuid.uuid4().hex, session_timeout_ms=6000)
    with throwaway_database() as db_url:
        engine = make_engine(db_url)
        upgrade(engine)
        with Session(engine) as session, session.begin():
            register_product(session, "pcb", {"height": 64, "width": 64, "channels": 3}, {})
        engine.dispose()
        port = free_port()
        env = {
            "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
            "DIFFQC_DATABASE_URL": db_url,
            "DIFFQC_BLOB_ROOT": str(work / "blobs"),
        }
        server = service_process("ingestion", port, env, work / "ingestion.log", ready_timeout_s=60).start()
        assert server.pid is not None
        try:
            yield Ingestion(f"127.0.0.1:{port}", server.pid, db_url, work / "blobs", kafka)
        finally:
            server.stop()


def _check(answer: Answer, got) -> None:
    if isinstance(got, grpc.RpcError):
        assert got.code().name == answer.status, (answer, got.code(), got.details())
        text = got.details() or ""
    else:
        assert answer.status == "REJECTED" and got.status == INGEST_STATUS_REJECTED, (answer, got)
        assert not got.HasField("image"), got
        text = got.detail
    _contains_in_order(text, answer.parts)


def _contains_in_order(text: str, parts: tuple[str, ...]) -> None:
    assert re.search(".*".join(re.escape(p) for p in parts), text, re.S), (parts, text)


def test_every_hostile_frame_gets_a_clear_answer_and_nothing_is_stored(ingestion):
    line = f"L-hostile-{uuid.uuid4().hex[:6]}"
    good = [IngestRequest(frame=frame(line), image_data=corpus.good_png()) for _ in range(2)]
    rejected_cases = [case for case in CASES if GRPC in case.answers and case not in CALL_ERRORS]
    stream = [good[0], *(IngestRequest.FromString(case.request(line)) for case in rejected_cases), good[1]]

    acks = ingestion.stream(stream)  # one stream: each bad frame is answered and the stream goes on

    assert len(acks) == len(stream)
    assert acks[0].status == acks[-1].status == INGEST_STATUS_ACCEPTED
    for case, ack in zip(rejected_cases, acks[1:-1], strict=True):
        _check(case.answers[GRPC], ack)
    for case in CASES:  # one at a time, and the call-level errors (which end a stream) too
        if GRPC in case.answers:
            [one] = ingestion.call(case.request(line))
            _check(case.answers[GRPC], one)
    for case in CALL_ERRORS:
        [streamed] = ingestion.call(case.request(line), stream=True)
        _check(case.answers[GRPC], streamed)

    # The service survived all of it, answers the next frame, and stored only the good ones.
    assert pid_alive(ingestion.pid, "services.ingestion")
    last = IngestRequest(frame=frame(line), image_data=corpus.encode("PNG"))
    [ack] = ingestion.call(last.SerializeToString())
    assert ack.status == INGEST_STATUS_ACCEPTED, ack.detail
    good_ids = {r.frame.frame_id for r in good} | {last.frame.frame_id}
    assert ingestion.rows() == 3
    assert ingestion.blobs() == {acks[0].image.sha256, acks[-1].image.sha256, ack.image.sha256}
    events = collect(ingestion.kafka, FRAMES, good_ids)
    assert set(events) == good_ids and all(len(msgs) == 1 for msgs in events.values())


@pytest.mark.parametrize("case", [c for c in CASES if CLI in c.answers], ids=lambda c: c.name)
def test_detect_names_the_file_and_the_problem(case, tiny_artifact, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # detect sets PIL's guard
    from diffqc.cli import app

    path = tmp_path / "frame.img"
    path.write_bytes(case.image())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["detect", "--model", str(tiny_artifact[0]), "--out", str(out), str(path)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps long lines
    answer = case.answers[CLI]
    _contains_in_order(message, (f"cannot read image {path}:", *answer.parts))
    assert not list(out.glob("*")), "nothing may be written for a refused image"


def test_detect_still_inspects_a_good_image(tiny_artifact, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    from diffqc.cli import app

    path = tmp_path / "good.png"
    path.write_bytes(corpus.encode("PNG", corpus.RNG.integers(0, 255, (64, 64, 3), dtype="uint8")))
    result = CliRunner().invoke(app, ["detect", "--model", str(tiny_artifact[0]), "--out", str(tmp_path), str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "good.json").is_file()


def test_docs_embed_the_table():
    text = DOCS.read_text()
    assert HEADING in text, f"{DOCS} has no {HEADING!r} section"
    assert hostile_table() in text.split(HEADING, 1)[1], (
        f"the table under {HEADING!r} in {DOCS} is stale: `python -m tests.security.test_hostile_inputs`"
    )


if __name__ == "__main__":
    sys.stdout.write(hostile_table())
